//! Market data: Dhan's binary feed from the socket to the tick cache.
//!
//! `codec` reads and writes single packets and `splitter` cuts a WebSocket message (or a file of
//! raw feed bytes) into them; `subscribe` writes and parses the JSON subscription requests;
//! `tick_cache` keeps the latest price of every instrument for every thread; `subscriptions` is
//! the shared set of instruments the engine tracks; `reader` is the worker that keeps the socket
//! alive and feeds the cache and the exit engine (with its reconnect backoff and the feed
//! `url`); `decode_cmd` is `scalper decode`; `vectors` holds the spec's test vectors.

pub mod codec;
pub mod decode_cmd;
pub mod reader;
pub mod splitter;
pub mod subscribe;
pub mod subscriptions;
pub mod tick_cache;
pub mod url;
pub mod vectors;

pub use codec::{
    DecodeError, DepthLevel, Disconnect, DisconnectReason, Full, Malformed, MarketStatus, Oi,
    Packet, PacketKind, PrevClose, Quote, Ticker, Unknown,
};
pub use reader::{FeedReader, FeedStats, ReaderConfig, ReaderShared};
pub use splitter::{Framed, Packets};
pub use subscribe::{FeedMode, FeedRequest, RequestError};
pub use subscriptions::SubscriptionSet;
pub use tick_cache::{TickCache, TickSnapshot};
