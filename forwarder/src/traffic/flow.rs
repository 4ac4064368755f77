//! One generated flow, and the rules that shape new flows: family, protocol, owner, port.
//!
//! A [`Flow`] is 32 bytes of plain data owned by one queue source (or by the plan while it
//! installs): the tuple is not stored but derived from the flow's index in the [`TupleSpace`], so
//! 16 Mi flows stay within half a gigabyte. Deriving it is O(1) and happens only when a frame is
//! built from scratch (templates, connection set-up and tear-down, or every packet when the flows
//! are too many to keep a template each).

use flowsteer_config::Profile;
use flowsteer_nic::wire::FiveTuple;
use flowtable::{Proto, ThreadId};

use super::addresses::{Family, TupleSpace};
use super::rng::SplitMix64;

/// The state of one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flow {
    /// Index of the flow's (client, source port) in its family's tuple space.
    pub index: u64,
    /// The flow's number, written into every stamp.
    pub id: u32,
    /// Sequence number of the flow's next packet.
    pub seq: u32,
    /// The Toeplitz hash a NIC computes for the flow's packets.
    pub rss_hash: u32,
    /// The thread that owns the flow according to the installed rules.
    pub owner: ThreadId,
    /// The local (destination) port.
    pub dst_port: u16,
    pub family: Family,
    pub proto: Proto,
    /// The next packet opens the connection (TCP SYN): set for flows set up by churn.
    pub opening: bool,
    /// The source holds a valid frame template for this flow.
    pub templated: bool,
}

impl Flow {
    /// A flow of `draft`'s shape at tuple-space `index`, owned by `owner`, before its first packet.
    /// `opening`: its first packet sets the connection up (TCP SYN).
    pub(crate) fn new(
        draft: &Draft,
        index: u64,
        id: u32,
        rss_hash: u32,
        owner: ThreadId,
        opening: bool,
    ) -> Flow {
        Flow {
            index,
            id,
            seq: 0,
            rss_hash,
            owner,
            dst_port: draft.dst_port,
            family: draft.family,
            proto: draft.proto,
            opening,
            templated: false,
        }
    }

    /// The flow's packets' tuple (client → local), `None` if its index lies outside the space
    /// (never for a flow the plan or a source created).
    pub(crate) fn tuple(&self, space: &TupleSpace) -> Option<FiveTuple> {
        space.tuple(self.family, self.proto.number(), self.index, self.dst_port)
    }
}

/// What a new flow looks like before its tuple is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Draft {
    pub family: Family,
    pub proto: Proto,
    /// The owner, when the profile chooses it before the flow's queue is known.
    pub owner: Option<ThreadId>,
    pub dst_port: u16,
}

/// How the configured profile shapes flows and their rules.
#[derive(Clone, Debug)]
pub(crate) struct FlowShape {
    pub profile: Profile,
    pub threads: u16,
    pub port_base: u16,
    pub ipv6_share: f64,
    pub udp_share: f64,
}

impl FlowShape {
    /// Draws a new flow's family, protocol and (except rss-friendly) owner and port. Three draws
    /// of `rng` in a fixed order, so the plan is a pure function of the seed.
    pub(crate) fn draft(&self, rng: &mut SplitMix64) -> Draft {
        let family = if rng.chance(self.ipv6_share) {
            Family::V6
        } else {
            Family::V4
        };
        let proto = if rng.chance(self.udp_share) {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let owner = rng.below(u64::from(self.threads)) as ThreadId;
        match self.profile {
            // Every thread serves port_base; the flow's queue decides its owner.
            Profile::RssFriendly => Draft {
                family,
                proto,
                owner: None,
                dst_port: self.port_base,
            },
            // `None` never reaches a plan (`TrafficPlan::install` refuses it); drafted like
            // `listeners` so the match stays total.
            Profile::Listeners | Profile::FewerQueues | Profile::Churn | Profile::None => Draft {
                family,
                proto,
                owner: Some(owner),
                dst_port: self.listen_port(owner),
            },
        }
    }

    /// The port thread `owner` listens on under this profile.
    pub(crate) fn listen_port(&self, owner: ThreadId) -> u16 {
        match self.profile {
            Profile::RssFriendly => self.port_base,
            _ => self.port_base.saturating_add(owner),
        }
    }

    /// Whether a flow of `proto` gets an exact rule at set-up. TCP always (the accepted
    /// connection); UDP only where the listen rule has several owners and would not pin it
    /// (rss-friendly: a connected UDP socket).
    pub(crate) fn exact_rule(&self, proto: Proto) -> bool {
        proto == Proto::Tcp || self.profile == Profile::RssFriendly
    }

    /// The protocols that may occur.
    pub(crate) fn protocols(&self) -> impl Iterator<Item = Proto> {
        let tcp = (self.udp_share < 1.0).then_some(Proto::Tcp);
        let udp = (self.udp_share > 0.0).then_some(Proto::Udp);
        tcp.into_iter().chain(udp)
    }

    /// The header mixes (family, protocol) that may occur.
    pub(crate) fn mixes(&self) -> Vec<(Family, Proto)> {
        self.families()
            .flat_map(|family| self.protocols().map(move |proto| (family, proto)))
            .collect()
    }

    /// The address families that may occur.
    pub(crate) fn families(&self) -> impl Iterator<Item = Family> {
        let v4 = (self.ipv6_share < 1.0).then_some(Family::V4);
        let v6 = (self.ipv6_share > 0.0).then_some(Family::V6);
        v4.into_iter().chain(v6)
    }
}

/// Hands out fresh tuple indices of one family to one queue: `base + k × stride + lane` for
/// k = 0, 1, ... Each queue has its own lane above everything the plan used, so no two queues (and
/// no queue and the plan) ever draw the same index, and none is ever drawn twice.
#[derive(Clone, Debug)]
pub(crate) struct IndexLane {
    next: u64,
    stride: u64,
    capacity: u64,
}

impl IndexLane {
    /// Lane `lane` of `stride` lanes over the indices from `base` below `capacity`.
    pub(crate) fn new(base: u64, lane: u16, stride: u16, capacity: u64) -> Self {
        IndexLane {
            next: base.saturating_add(u64::from(lane)),
            stride: u64::from(stride.max(1)),
            capacity,
        }
    }

    /// The next fresh index, `None` once the family's space is used up.
    #[inline]
    pub(crate) fn take(&mut self) -> Option<u64> {
        if self.next >= self.capacity {
            return None;
        }
        let index = self.next;
        self.next = self.next.saturating_add(self.stride);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(profile: Profile) -> FlowShape {
        FlowShape {
            profile,
            threads: 4,
            port_base: 8000,
            ipv6_share: 0.5,
            udp_share: 0.25,
        }
    }

    #[test]
    fn listeners_draft_owner_and_port_together() {
        let s = shape(Profile::Listeners);
        let mut rng = SplitMix64::new(5);
        let mut owners = [0u32; 4];
        let (mut v6, mut udp) = (0, 0);
        for _ in 0..4000 {
            let d = s.draft(&mut rng);
            let owner = d.owner.expect("listeners choose the owner");
            assert_eq!(d.dst_port, 8000 + owner);
            owners[usize::from(owner)] += 1;
            v6 += u32::from(d.family == Family::V6);
            udp += u32::from(d.proto == Proto::Udp);
        }
        assert!(
            owners.iter().all(|&n| (850..1150).contains(&n)),
            "{owners:?}"
        );
        assert!((1800..2200).contains(&v6), "{v6}");
        assert!((850..1150).contains(&udp), "{udp}");
    }

    #[test]
    fn rss_friendly_leaves_the_owner_to_the_queue() {
        let s = shape(Profile::RssFriendly);
        let d = s.draft(&mut SplitMix64::new(1));
        assert_eq!((d.owner, d.dst_port), (None, 8000));
        assert!(s.exact_rule(Proto::Udp) && s.exact_rule(Proto::Tcp));
        assert!(!shape(Profile::Churn).exact_rule(Proto::Udp));
    }

    #[test]
    fn protocols_and_families_follow_the_shares() {
        let mut s = shape(Profile::Listeners);
        assert_eq!(s.protocols().count(), 2);
        s.udp_share = 0.0;
        s.ipv6_share = 1.0;
        assert_eq!(s.protocols().collect::<Vec<_>>(), [Proto::Tcp]);
        assert_eq!(s.families().collect::<Vec<_>>(), [Family::V6]);
    }

    #[test]
    fn lanes_are_disjoint_and_end_at_capacity() {
        let mut a = IndexLane::new(10, 0, 2, 20);
        let mut b = IndexLane::new(10, 1, 2, 20);
        let from_a: Vec<u64> = std::iter::from_fn(|| a.take()).collect();
        let from_b: Vec<u64> = std::iter::from_fn(|| b.take()).collect();
        assert_eq!(from_a, [10, 12, 14, 16, 18]);
        assert_eq!(from_b, [11, 13, 15, 17, 19]);
        assert_eq!(a.take(), None);
    }
}
