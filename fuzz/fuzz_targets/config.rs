//! The configuration loader and validator on arbitrary text: parsing never panics and every
//! error is a value that names its problems; what parses is valid, and its printed form parses
//! back to an equal configuration (`Config::to_toml_string`'s promise).
#![no_main]

use flowsteer_config::{Config, MAX_PROBLEMS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The loader reads UTF-8 only (a file that is not is a read error before parsing).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match Config::from_toml_str(text) {
        Ok(config) => {
            assert_eq!(config.validate(), Ok(()));
            let printed = config.to_toml_string();
            let again = Config::from_toml_str(&printed).unwrap_or_else(|e| {
                panic!("the printed configuration parses back: {e}\n{printed}")
            });
            assert_eq!(again, config);
            // The derived sizes are total functions of a valid configuration.
            let _ = config.min_pool_buffers();
            let split = config.pool_split();
            let queues = u64::from(config.port.queues);
            assert_eq!(
                u64::from(split.per_queue) * queues + u64::from(split.shared),
                u64::from(config.pool.buffers)
            );
        }
        Err(error) => {
            assert!(!error.problems().is_empty(), "an error holds a problem");
            assert!(error.problems().len() <= MAX_PROBLEMS);
            let message = error.to_string();
            assert!(!message.is_empty());
        }
    }
});
