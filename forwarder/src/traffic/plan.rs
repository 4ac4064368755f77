//! The traffic plan: every flow, its queue, its owner, and the rules a stack would hold for it.
//!
//! [`TrafficPlan::install`] runs once, before the stack threads start, on the thread that builds
//! the engine. Its cost is O(flows): per flow three random draws, one Toeplitz hash, one RETA
//! lookup and (TCP, or UDP under rss-friendly) one flow-table insert; plus
//! threads × protocols × families listen rules, and at most [`TEMPLATE_BUDGET`] bytes of frame
//! templates. It then hands each queue's [`QueueSource`] to that queue's thread, once.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use flowsteer_config::{Config, Distribution, Profile};
use flowsteer_nic::rss::SoftRss;
use flowtable::{FlowTable, ListenKey, ThreadId};

use super::addresses::{Family, TupleSpace};
use super::error::TrafficError;
use super::flow::{Flow, FlowShape, IndexLane};
use super::frame::{FrameWriter, TEMPLATE_BUDGET};
use super::pick::FlowPicker;
use super::rate::TokenBucket;
use super::rng::SplitMix64;
use super::source::{Churn, Lifetime, QueueSource};
use super::stats::SourceStats;
use crate::keys::flow_key;

/// Candidate tuples a churning source tries per new flow, in multiples of the expected number
/// (RETA size / entries of its queue): a miss after 64 times the mean is a probability of e^-64.
const CANDIDATE_TRIES_PER_EXPECTED: usize = 64;

/// The generated traffic of one run: per receive queue a frame source, and the rules installed
/// for the flows.
///
/// Built once before the stack threads start; each [`QueueSource`] is then moved to its queue's
/// thread. Install costs O(flows): per flow three random draws, a Toeplitz hash, a RETA lookup
/// and at most one flow-table insert; frame templates take at most 64 MiB over all queues
/// (beyond that, frames are built per packet). Flow state takes 32 bytes per flow.
pub struct TrafficPlan {
    sources: Vec<Option<QueueSource>>,
    stats: Arc<[SourceStats]>,
    flows: usize,
}

impl TrafficPlan {
    /// Builds every flow, partitions flows over the port's queues through `rss` (exactly where a
    /// NIC with this RSS key and RETA would deliver them), and installs the rules a stack would
    /// have installed by now into `table`: its listen rules, and one exact rule per TCP connection
    /// (and per UDP flow under rss-friendly, a connected socket).
    ///
    /// Deterministic from `traffic.seed`. On error every rule installed so far is removed again.
    pub fn install(
        config: &Config,
        rss: &SoftRss,
        table: &Arc<dyn FlowTable>,
    ) -> Result<TrafficPlan, TrafficError> {
        let traffic = &config.traffic;
        let threads = config.engine.threads;
        let queues = config.port.queues;
        check_config(config, rss)?;
        let shape = FlowShape {
            profile: traffic.profile,
            threads,
            port_base: traffic.port_base,
            ipv6_share: traffic.ipv6_share,
            udp_share: traffic.udp_share,
        };
        let space = TupleSpace::new(config.port.ipv4, config.port.ipv6);
        let packet_size = usize::from(traffic.packet_size);
        let local_mac = config.port.mac.0;
        let mixes = shape.mixes();
        // Checks the frame size for every header mix in use before a single rule goes in.
        FrameWriter::new(packet_size, local_mac, space.clone(), &mixes, 0, false)
            .map_err(TrafficError::Frame)?;

        let mut installed = Installed::new(table.as_ref());
        let mut per_queue: Vec<Vec<Flow>> = vec![Vec::new(); usize::from(queues)];
        let mut next_index = [0u64; 2];
        let result = installed.listen_rules(config, &shape).and_then(|()| {
            partition(
                config,
                rss,
                table.as_ref(),
                &shape,
                &space,
                &mut per_queue,
                &mut next_index,
            )
        });
        if let Err(e) = result {
            installed.roll_back(&shape, &space, &per_queue);
            return Err(e);
        }

        let flows = per_queue.iter().map(Vec::len).sum::<usize>();
        let templates = flows.saturating_mul(packet_size) <= TEMPLATE_BUDGET;
        let stats: Arc<[SourceStats]> = (0..queues).map(|_| SourceStats::default()).collect();
        let now = Instant::now();
        let mut sources = Vec::with_capacity(usize::from(queues));
        for (queue, queue_flows) in (0..queues).zip(per_queue) {
            let frames = FrameWriter::new(
                packet_size,
                local_mac,
                space.clone(),
                &mixes,
                queue_flows.len(),
                templates,
            )
            .map_err(TrafficError::Frame)?;
            let slots = u32::try_from(queue_flows.len())
                .map_err(|_| TrafficError::Config("more than 2^32 flows on one queue".into()))?;
            let picker = FlowPicker::new(slots, traffic.distribution, traffic.zipf_s);
            let rate = traffic
                .rate
                .pps()
                .map(|pps| TokenBucket::new(pps, u64::from(queues), now));
            let churn = (traffic.profile == Profile::Churn).then(|| Churn {
                lifetime: if traffic.flow_packets > 0 {
                    Lifetime::Packets(traffic.flow_packets)
                } else {
                    Lifetime::Scheduled(TokenBucket::new(
                        u64::from(traffic.churn_rate),
                        u64::from(queues),
                        now,
                    ))
                },
                shape: shape.clone(),
                rss: rss.clone(),
                lanes: [
                    IndexLane::new(next_index[0], queue, queues, space.capacity(Family::V4)),
                    IndexLane::new(next_index[1], queue, queues, space.capacity(Family::V6)),
                ],
                next_id: traffic.flows.wrapping_add(u32::from(queue)),
                id_stride: u32::from(queues),
                max_tries: candidate_tries(rss, queue),
                cursor: 0,
            });
            sources.push(Some(QueueSource::new(
                queue,
                queue_flows,
                frames,
                picker,
                SplitMix64::for_stream(traffic.seed, u64::from(queue) + 1),
                rate,
                churn,
                table.clone(),
                stats.clone(),
            )));
        }
        Ok(TrafficPlan {
            sources,
            stats,
            flows,
        })
    }

    /// The frame source of receive queue `queue`: once; `None` afterwards or if `queue` is out of
    /// range.
    pub fn take_source(&mut self, queue: u16) -> Option<QueueSource> {
        self.sources.get_mut(usize::from(queue))?.take()
    }

    /// One stats block per queue, shared with the exporter (single writer: the queue's thread).
    pub fn stats(&self) -> Arc<[SourceStats]> {
        self.stats.clone()
    }

    /// Flows of the plan (the configured `traffic.flows`); churn replaces flows, never adds any.
    pub fn flows(&self) -> usize {
        self.flows
    }

    /// Flows each queue carries, by queue.
    pub fn flows_per_queue(&self) -> Vec<usize> {
        self.sources
            .iter()
            .map(|s| s.as_ref().map_or(0, QueueSource::flows))
            .collect()
    }
}

impl fmt::Debug for TrafficPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrafficPlan")
            .field("flows", &self.flows)
            .field("queues", &self.sources.len())
            .field(
                "sources_left",
                &self.sources.iter().filter(|s| s.is_some()).count(),
            )
            .finish()
    }
}

/// What a validated configuration guarantees and the plan relies on, checked again so that a
/// hand-built configuration gets an error instead of wrong traffic.
fn check_config(config: &Config, rss: &SoftRss) -> Result<(), TrafficError> {
    let threads = config.engine.threads;
    let queues = config.port.queues;
    let traffic = &config.traffic;
    let problem = if traffic.profile == Profile::None {
        Some(
            "traffic.profile = \"none\" generates no traffic: there is no plan to install"
                .to_string(),
        )
    } else if threads == 0 {
        Some("engine.threads must be at least 1".to_string())
    } else if queues == 0 || queues > threads {
        Some(format!("port.queues must be 1..={threads}, got {queues}"))
    } else if rss.reta.queues() != queues {
        Some(format!(
            "the port's RSS table spreads over {} queues but port.queues = {queues}",
            rss.reta.queues()
        ))
    } else if traffic.profile != Profile::RssFriendly
        && u32::from(traffic.port_base) + u32::from(threads) - 1 > u32::from(u16::MAX)
    {
        Some(format!(
            "traffic.port_base {} + {threads} threads runs past port 65535",
            traffic.port_base
        ))
    } else if traffic.distribution == Distribution::Zipf
        && !(traffic.zipf_s > 0.0 && traffic.zipf_s.is_finite())
    {
        Some(format!(
            "traffic.zipf_s must be > 0, got {}",
            traffic.zipf_s
        ))
    } else {
        None
    };
    problem.map_or(Ok(()), |msg| Err(TrafficError::Config(msg)))
}

/// Assigns every flow its tuple, queue and owner and installs its exact rule: fills `per_queue`
/// with the flows of each queue (in flow order: the Zipf rank) and leaves in `next_index` the
/// first unused tuple index per family. On error, `per_queue` holds exactly the flows whose rules
/// went in.
fn partition(
    config: &Config,
    rss: &SoftRss,
    table: &dyn FlowTable,
    shape: &FlowShape,
    space: &TupleSpace,
    per_queue: &mut [Vec<Flow>],
    next_index: &mut [u64; 2],
) -> Result<(), TrafficError> {
    let traffic = &config.traffic;
    let queues = config.port.queues;
    let mut rng = SplitMix64::new(traffic.seed);
    for id in 0..traffic.flows {
        let draft = shape.draft(&mut rng);
        let family_slot = usize::from(draft.family == Family::V6);
        let index = next_index[family_slot];
        let exhausted = || TrafficError::TupleSpaceExhausted {
            family: if draft.family == Family::V6 {
                "IPv6"
            } else {
                "IPv4"
            },
            flows: index + 1,
            capacity: space.capacity(draft.family),
        };
        let tuple = space
            .tuple(draft.family, draft.proto.number(), index, draft.dst_port)
            .ok_or_else(exhausted)?;
        next_index[family_slot] = index + 1;
        let (rss_hash, queue) = rss.queue_of_tuple(&tuple);
        let queue_flows = per_queue.get_mut(usize::from(queue)).ok_or_else(|| {
            TrafficError::Config(format!("soft RSS chose queue {queue} of {queues}"))
        })?;
        // rss-friendly: the thread of the queue RSS delivers the flow to owns it.
        let owner: ThreadId = draft.owner.unwrap_or(queue);
        let flow = Flow::new(&draft, index, id, rss_hash, owner, false);
        if shape.exact_rule(draft.proto) {
            insert_exact(table, &flow, space)?;
        }
        queue_flows.push(flow);
    }
    Ok(())
}

fn candidate_tries(rss: &SoftRss, queue: u16) -> u32 {
    let entries = rss.reta.entries();
    let mine = entries.iter().filter(|&&q| q == queue).count();
    if mine == 0 {
        return 0;
    }
    let expected = entries.len().div_ceil(mine);
    u32::try_from(expected.saturating_mul(CANDIDATE_TRIES_PER_EXPECTED)).unwrap_or(u32::MAX)
}

/// Installs `flow`'s exact rule.
fn insert_exact(
    table: &dyn FlowTable,
    flow: &Flow,
    space: &TupleSpace,
) -> Result<(), TrafficError> {
    let key = flow
        .tuple(space)
        .and_then(|t| flow_key(&t))
        .ok_or_else(|| TrafficError::Config(format!("flow {} has no flow key", flow.id)))?;
    table
        .insert(key, flow.owner)
        .map(|_| ())
        .map_err(|full| TrafficError::RuleTableFull {
            rule: format!("the exact rule of flow {} ({key})", flow.id),
            full,
        })
}

/// The listen rules installed so far, to take back (with the flows' exact rules) if the plan
/// cannot be completed.
struct Installed<'a> {
    table: &'a dyn FlowTable,
    listen: Vec<(ListenKey, ThreadId)>,
}

impl<'a> Installed<'a> {
    fn new(table: &'a dyn FlowTable) -> Self {
        Installed {
            table,
            listen: Vec::new(),
        }
    }

    /// The listen rules of every thread, for every protocol the traffic uses. rss-friendly: all
    /// threads share one port on the port's own address of each family (SO_REUSEPORT style).
    /// The other profiles: thread t listens on `port_base + t` on every local address (a wildcard
    /// bind, one rule for both families).
    fn listen_rules(&mut self, config: &Config, shape: &FlowShape) -> Result<(), TrafficError> {
        let ips: Vec<Option<IpAddr>> = if shape.profile == Profile::RssFriendly {
            shape
                .families()
                .map(|family| {
                    Some(match family {
                        Family::V4 => IpAddr::V4(config.port.ipv4),
                        Family::V6 => IpAddr::V6(config.port.ipv6),
                    })
                })
                .collect()
        } else {
            vec![None]
        };
        for proto in shape.protocols() {
            for &ip in &ips {
                for thread in 0..shape.threads {
                    let rule = ListenKey {
                        proto,
                        ip,
                        port: shape.listen_port(thread),
                    };
                    self.table.listen_add(rule, thread).map_err(|full| {
                        TrafficError::RuleTableFull {
                            rule: format!("listen rule {rule} for thread {thread}"),
                            full,
                        }
                    })?;
                    self.listen.push((rule, thread));
                }
            }
        }
        Ok(())
    }

    /// Removes the exact rules of `flows` and every listen rule added.
    fn roll_back(&mut self, shape: &FlowShape, space: &TupleSpace, flows: &[Vec<Flow>]) {
        for flow in flows.iter().flatten().filter(|f| shape.exact_rule(f.proto)) {
            if let Some(key) = flow.tuple(space).and_then(|t| flow_key(&t)) {
                self.table.remove(&key);
            }
        }
        for (rule, thread) in self.listen.drain(..) {
            self.table.listen_remove(&rule, thread);
        }
    }
}
