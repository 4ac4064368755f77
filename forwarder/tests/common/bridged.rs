//! The engine on its user-space veth behind a virtual bridge, for the tests whose clients are
//! user-space hosts on the bridge's other ports (no root needed).

use flowsteer_config::Config;
use flowsteer_nic::vbridge::{BridgeThread, BridgeThreadConfig, PeerPort, VBridge, VBridgeConfig};
use forwarder::engine::Engine;
use forwarder::report::RunReport;

/// A running engine and the bridge thread in front of it.
pub struct Bridged {
    engine: Option<Engine>,
    bridge: Option<BridgeThread>,
}

impl Bridged {
    /// Starts the engine on `config` (a uveth port) and a bridge with `peers` client ports.
    pub fn start(config: &Config, peers: usize) -> (Bridged, Vec<PeerPort>) {
        let engine = Engine::start(config, false).expect("the engine starts");
        let uveth = engine.uveth().expect("the engine runs on a uveth");
        let mut bridge = VBridge::new(VBridgeConfig::default()).expect("default bridge");
        bridge.attach_uveth(uveth).expect("the uveth attaches");
        let ports = (0..peers)
            .map(|_| bridge.attach_peer().expect("a peer port").1)
            .collect();
        let cache = engine.shared().pool.cache(64);
        let bridge = bridge
            .spawn(cache, BridgeThreadConfig::default())
            .expect("the bridge thread starts");
        let bridged = Bridged {
            engine: Some(engine),
            bridge: Some(bridge),
        };
        (bridged, ports)
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("running")
    }

    /// Stops the bridge, then the engine (which drains the uveth's rings into the pool before
    /// counting it), with the checks of [`super::stop_and_check`].
    pub fn stop(mut self) -> RunReport {
        assert!(!self.engine().thread_ended(), "a stack thread died early");
        let bridge = self.bridge.take().expect("running").stop();
        drop(bridge.expect("the bridge thread ends cleanly"));
        super::stop_and_check(self.engine.take().expect("running"))
    }
}

impl Drop for Bridged {
    fn drop(&mut self) {
        // A failed assertion mid-test: stop the threads rather than leave them polling.
        drop(self.bridge.take());
        if let Some(engine) = self.engine.take() {
            let _ = engine.stop();
        }
    }
}
