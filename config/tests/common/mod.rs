//! What the configuration tests share: a file's problems as printed, or its parsed config.

#![allow(dead_code)] // each test file uses its own subset

use flowsteer_config::Config;

/// Every problem `text` has, as printed.
pub fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text) {
        Ok(_) => panic!("accepted a configuration that should fail:\n{text}"),
        Err(error) => error.problems().iter().map(ToString::to_string).collect(),
    }
}

/// The single problem `text` has.
pub fn problem(text: &str) -> String {
    let mut all = problems(text);
    assert_eq!(all.len(), 1, "expected exactly one problem, got {all:#?}");
    all.remove(0)
}

/// `text` parsed, or a panic naming what was refused.
pub fn valid(text: &str) -> Config {
    Config::from_toml_str(text)
        .unwrap_or_else(|e| panic!("rejected a valid configuration:\n{text}\n--\n{e}"))
}
