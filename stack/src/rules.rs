//! The flow rules of one thread: rules follow sockets.
//!
//! - A listening app adds a listen rule (any local address, its port) with this thread as one
//!   owner; several threads may own one port's rule.
//! - A connection set up (the SYN accepted) adds its exact 5-tuple rule, before the SYN-ACK
//!   leaves, so the client's next segment finds it whichever queue it arrives on.
//! - A connection's end deletes the exact rule. The thread's exit deletes all its rules
//!   (`FlowTable::remove_owner`, called by the engine after the last packet).
//!
//! The thread also keeps the set of its own connections, which answers "does this thread have a
//! socket for this packet" without asking smoltcp, for the misdirection counters.

use std::collections::HashSet;
use std::sync::Arc;

use flowtable::{FlowKey, FlowTable, ListenKey, Proto, TableFull, ThreadId};

use crate::stats::StackStats;

/// The rules and connections of one stack thread.
pub(crate) struct Rules {
    table: Arc<dyn FlowTable>,
    me: ThreadId,
    /// Keyed ahash rather than SipHash: read for every TCP segment, and as unpredictable to a peer
    /// choosing its addresses and ports, for a fraction of the cost per key.
    connections: HashSet<FlowKey, ahash::RandomState>,
}

impl Rules {
    pub(crate) fn new(table: Arc<dyn FlowTable>, me: ThreadId) -> Self {
        Rules {
            table,
            me,
            connections: HashSet::default(),
        }
    }

    pub(crate) fn me(&self) -> ThreadId {
        self.me
    }

    pub(crate) fn table(&self) -> &dyn FlowTable {
        &*self.table
    }

    /// Adds this thread as an owner of the listen rule on `port`.
    pub(crate) fn listen(&self, proto: Proto, port: u16) -> Result<(), TableFull> {
        self.table
            .listen_add(ListenKey::any_ip(proto, port), self.me)
    }

    /// A connection was set up: its exact rule goes in (a full table is counted; the connection
    /// still works for the packets that reach this thread by themselves).
    pub(crate) fn connection_opened(&mut self, key: FlowKey, stats: &StackStats) {
        self.connections.insert(key);
        match self.table.insert(key, self.me) {
            Ok(_) => stats.rules_added.add(1),
            Err(TableFull { .. }) => stats.rule_add_failed.add(1),
        }
    }

    /// An outbound connection is about to send its SYN: it is this thread's, and its exact rule
    /// goes in when `rule` (else its local port was chosen so that RSS brings its answers here).
    pub(crate) fn outbound_opened(&mut self, key: FlowKey, rule: bool, stats: &StackStats) {
        if rule {
            self.connection_opened(key, stats);
        } else {
            self.connections.insert(key);
        }
    }

    /// A connection ended: its exact rule goes, if it is still this thread's (another thread
    /// may have installed a rule for a new connection on the same 5-tuple since).
    pub(crate) fn connection_closed(&mut self, key: &FlowKey, stats: &StackStats) {
        // The rule first: a key is forgotten only once its rule is gone (`Stack::rules_held`).
        if self.table.remove_owned(key, self.me) {
            stats.rules_deleted.add(1);
        }
        self.connections.remove(key);
    }

    /// True when this thread has a connection for `key`.
    pub(crate) fn has_connection(&self, key: &FlowKey) -> bool {
        self.connections.contains(key)
    }

    /// Connections open on this thread.
    pub(crate) fn connections(&self) -> usize {
        self.connections.len()
    }

    /// The keys of the connections this thread holds.
    pub(crate) fn held(&self) -> impl Iterator<Item = FlowKey> + '_ {
        self.connections.iter().copied()
    }
}
