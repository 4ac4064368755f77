//! Every ready configuration in the workspace's `examples/` folder parses and validates, so a
//! user who copies one starts from something that runs.

use std::path::{Path, PathBuf};

use flowsteer_config::Config;

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = example_files();
    assert!(!files.is_empty(), "no examples/*.toml found");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            Config::load(file)
                .err()
                .map(|error| format!("{}:\n{error}", file.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_example_prints_back_to_itself() {
    for file in example_files() {
        let config =
            Config::load(&file).unwrap_or_else(|error| panic!("{}:\n{error}", file.display()));
        let reparsed = Config::from_toml_str(&config.to_toml_string())
            .unwrap_or_else(|error| panic!("{} printed back:\n{error}", file.display()));
        assert_eq!(reparsed, config, "{}", file.display());
    }
}
