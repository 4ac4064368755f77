//! The generator's port: a uveth whose receive queues the traffic generator fills, one
//! [`QueueSource`] per queue, called by the queue's owner before each receive burst.

use std::sync::{Arc, Mutex, PoisonError};

use flowsteer_nic::pool::PoolCache;
use flowsteer_nic::port::{Port, PortControl};
use flowsteer_nic::rss::SoftRss;
use flowsteer_nic::uveth::{Uveth, UvethError, UvethQueue};

use super::{QueueSource, TrafficPlan};

/// A uveth with the generator's sources on its queues; otherwise the uveth itself (frames can
/// still be injected into it).
pub struct GeneratedPort {
    uveth: Arc<Uveth>,
    /// The sources not yet taken with their queue.
    plan: Mutex<TrafficPlan>,
}

impl GeneratedPort {
    /// `uveth`'s queues fed by `plan`'s sources (installed through `uveth`'s RSS).
    pub fn new(uveth: Arc<Uveth>, plan: TrafficPlan) -> Self {
        GeneratedPort {
            uveth,
            plan: Mutex::new(plan),
        }
    }
}

impl PortControl for GeneratedPort {
    fn queues(&self) -> u16 {
        self.uveth.queues()
    }

    fn mac(&self) -> [u8; 6] {
        self.uveth.mac()
    }

    fn describe(&self) -> String {
        format!("{}, traffic generator", self.uveth.describe())
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.uveth.drops()
    }

    /// The generator writes a queue's frames when its owner polls: work always waits.
    fn rx_waiting(&self, queue: u16) -> Option<bool> {
        (queue < self.queues()).then_some(true)
    }

    fn rss(&self) -> Option<&SoftRss> {
        Some(self.uveth.soft_rss())
    }

    fn reclaim(&self, cache: &mut PoolCache) -> usize {
        self.uveth.reclaim(cache)
    }
}

impl Port for GeneratedPort {
    type Queue = UvethQueue<QueueSource>;
    type Error = UvethError;

    /// The queue with its source; a queue taken a second time (after its first owner dropped
    /// it) has none left.
    fn take_queue(&self, queue: u16) -> Result<Self::Queue, UvethError> {
        let source = self
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_source(queue);
        self.uveth.take_queue(queue, source)
    }
}
