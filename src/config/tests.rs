//! Validation rules, one table per concern: each case is a TOML snippet and the error line it
//! must produce (or none).

use super::*;

#[test]
fn an_empty_file_is_a_valid_paper_config() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c.mode, Mode::Paper);
    assert_eq!(c.summary(), "paper, paper, sqlite");
}
