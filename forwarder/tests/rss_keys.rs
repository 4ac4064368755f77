//! The configuration crate depends on nothing, so it spells the named RSS keys itself; they must be
//! the very keys the NIC layer hashes with.

use flowsteer_config::RssKey;
use flowsteer_nic::rss::{MICROSOFT_KEY, SYMMETRIC_KEY};

#[test]
fn named_rss_keys_match_the_nic_layer() {
    assert_eq!(RssKey::Microsoft.bytes(), MICROSOFT_KEY);
    assert_eq!(RssKey::Symmetric.bytes(), SYMMETRIC_KEY);
}
