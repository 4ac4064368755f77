//! The per-thread user-space protocol stack (smoltcp) and its apps.
//!
//! Empty for now: until the stack lands, the consumer of steered packets is the forwarder's verifying
//! sink. Nothing here pretends to be a stack.
