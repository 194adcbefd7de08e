//! A consistent master for the simulator's own instruments when no file is given (lot 75, tick
//! ₹0.05, freeze 1800 and a band around the opening price), and the detailed CSV the simulator
//! serves at `GET /v2/instrument/{exchangeSegment}`.

use std::fmt::Write as _;

use super::{Instrument, Instruments, LoadCounts, TickUnit};
use crate::domain::{InstrumentKey, Paise, Qty, Segment};

pub const SIM_LOT: i64 = 75;
pub const SIM_TICK_PAISE: i64 = 5;
pub const SIM_FREEZE: i64 = 1800;

/// The §8.1 header, all 32 columns.
pub const DETAILED_HEADER: &str = "EXCH_ID,SEGMENT,SECURITY_ID,ISIN,INSTRUMENT,UNDERLYING_SECURITY_ID,UNDERLYING_SYMBOL,SYMBOL_NAME,DISPLAY_NAME,INSTRUMENT_TYPE,SERIES,LOT_SIZE,SM_EXPIRY_DATE,STRIKE_PRICE,OPTION_TYPE,TICK_SIZE,EXPIRY_FLAG,BRACKET_FLAG,COVER_FLAG,ASM_GSM_FLAG,ASM_GSM_CATEGORY,BUY_SELL_INDICATOR,BUY_CO_MIN_MARGIN_PER,BUY_CO_SL_RANGE_MAX_PERC,BUY_CO_SL_RANGE_MIN_PERC,BUY_BO_MIN_MARGIN_PER,BUY_BO_PROFIT_RANGE_MAX_PERC,BUY_BO_PROFIT_RANGE_MIN_PERC,MTF_LEVERAGE,SM_UPPER_LIMIT,SM_LOWER_LIMIT,SM_FREEZE_QTY";

/// One generated row: an index is an `INDEX` of lot 1 without band; anything tradable is an
/// index option `SIM-<id>` of lot 75, tick ₹0.05, freeze 1800, band from one tick to ten times
/// the opening price (at least ₹100).
fn generated(key: InstrumentKey, open: Paise) -> Instrument {
    let tick = Paise(SIM_TICK_PAISE);
    if key.segment == Segment::IdxI {
        return Instrument {
            key,
            kind: "INDEX".into(),
            underlying: format!("SIM{}", key.security_id).into(),
            symbol: format!("SIM-INDEX-{}", key.security_id).into(),
            display_name: format!("Sim index {}", key.security_id).into(),
            lot: Qty(1),
            expiry: None,
            expiry_time: None,
            strike: None,
            option: None,
            tick,
            band: None,
            freeze: None,
        };
    }
    let upper = Paise(open.0.saturating_mul(10).max(10_000));
    let upper = Paise(upper.0 - upper.0 % SIM_TICK_PAISE);
    Instrument {
        key,
        kind: "OPTIDX".into(),
        underlying: "SIM".into(),
        symbol: format!("SIM-{}", key.security_id).into(),
        display_name: format!("SIM {} {}", key.segment, key.security_id).into(),
        lot: Qty(SIM_LOT),
        expiry: None,
        expiry_time: None,
        strike: None,
        option: None,
        tick,
        band: Some((tick, upper)),
        freeze: Some(Qty(SIM_FREEZE)),
    }
}

/// The generated master for these instruments and opening prices.
pub fn generate(instruments: &[(InstrumentKey, Paise)]) -> Instruments {
    let rows: Vec<Instrument> = instruments.iter().map(|&(k, p)| generated(k, p)).collect();
    let counts = LoadCounts {
        rows: rows.len() as u64,
        tick_unit: Some(TickUnit::Rupees),
        ..LoadCounts::default()
    };
    Instruments::build(rows, counts)
}

/// Rupees with four decimals, as Dhan writes ticks (`0.0500`).
fn rupees4(p: Paise) -> String {
    format!("{}00", p)
}

/// The detailed CSV (32 columns, ticks in rupees) of the instruments in `segment` (all when
/// `None`).
pub fn to_csv(table: &Instruments, segment: Option<Segment>) -> String {
    let mut out = String::with_capacity(256 * table.len().max(1));
    out.push_str(DETAILED_HEADER);
    out.push('\n');
    for i in table.iter().filter(|i| segment.is_none_or(|s| s == i.key.segment)) {
        let (exch, seg) = i.key.segment.exchange_letters();
        let expiry = i.expiry.map_or_else(|| "0001-01-01".to_string(), |d| d.to_string());
        let strike = i.strike.map_or_else(|| "-0.01".to_string(), |p| p.to_string());
        let opt = i.option.map_or("XX", |o| o.code());
        let (lower, upper) = i.band.map_or((String::from("0"), String::from("0")), |(l, u)| {
            (l.to_string(), u.to_string())
        });
        let freeze = i.freeze.map_or(0, |f| f.0);
        let _ = writeln!(
            out,
            "{exch},{seg},{id},NA,{kind},0,{und},{sym},{disp},NA,NA,{lot}.0,{expiry},{strike},{opt},{tick},N,N,N,N,NA,A,0,0,0,0,0,0,0,{upper},{lower},{freeze}",
            id = i.key.security_id,
            kind = i.kind,
            und = i.underlying,
            sym = i.symbol,
            disp = i.display_name.replace(',', " "),
            lot = i.lot,
            tick = rupees4(i.tick),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruments::parse_master;

    #[test]
    fn generated_master_round_trips_through_the_csv() {
        let table = generate(&[
            (InstrumentKey::new(Segment::IdxI, 13), Paise(2_450_000)),
            (InstrumentKey::new(Segment::NseFno, 52175), Paise(12_000)),
        ]);
        let csv = to_csv(&table, None);
        let back = parse_master(csv.as_bytes()).unwrap();
        assert_eq!(back.len(), 2);
        let opt = back.get(InstrumentKey::new(Segment::NseFno, 52175)).unwrap();
        assert_eq!(opt, table.get(opt.key).unwrap());
        assert_eq!(opt.lot, Qty(75));
        assert_eq!(opt.tick, Paise(5));
        assert_eq!(opt.freeze, Some(Qty(1800)));
        assert_eq!(opt.band, Some((Paise(5), Paise(120_000))));
        assert_eq!(to_csv(&table, Some(Segment::NseFno)).lines().count(), 2);
    }
}
