//! The wire parser and classifier on arbitrary bytes: no panic, and the properties
//! `nic/tests/wire_proptest.rs` checks on the inputs proptest draws hold for every input
//! (`flowsteer_testrig::wire_check` states them).
#![no_main]

use flowsteer_testrig::wire_check::check_classification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Err(broken) = check_classification(frame) {
        panic!("{broken}: {frame:02x?}");
    }
});
