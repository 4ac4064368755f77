//! Which flow of a queue sends the next packet: uniform, or Zipf through an alias table.
//!
//! Zipf gives the queue's flow of rank k (0-based slot k) the weight 1 / (k + 1)^s. Sampling uses
//! Walker's alias method (Vose's construction): O(n) to build, 8 bytes per flow, and per packet
//! O(1): one 64-bit random draw split into a slot (high half, multiply-shift) and a coin (low half)
//! compared with the slot's threshold — no search, no division, no floating point. Uniform needs no
//! table: one draw and one multiply-shift.
//!
//! Built once at install, then owned and read by one queue source's thread only.

use flowsteer_config::Distribution;

use super::rng::SplitMix64;

/// Draws flow slots of one queue.
#[derive(Debug)]
pub(crate) struct FlowPicker {
    slots: u32,
    /// Zipf alias table; empty for the uniform distribution.
    alias: AliasTable,
}

#[derive(Debug, Default)]
struct AliasTable {
    /// Keep slot i when the 32-bit coin is below `threshold[i]`, else take `alias[i]`.
    /// `u32::MAX` means "always keep" (probability 1 up to 2^-32).
    threshold: Vec<u32>,
    alias: Vec<u32>,
}

impl FlowPicker {
    /// A picker over `slots` flows (at most 2^32 - 1; the configuration caps flows at 2^24).
    pub(crate) fn new(slots: u32, distribution: Distribution, zipf_s: f64) -> Self {
        let alias = match distribution {
            Distribution::Uniform => AliasTable::default(),
            Distribution::Zipf => AliasTable::zipf(slots, zipf_s),
        };
        FlowPicker { slots, alias }
    }

    /// Number of slots drawn from.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    /// The next slot; `None` only when there are no slots.
    #[inline]
    pub(crate) fn pick(&self, rng: &mut SplitMix64) -> Option<usize> {
        if self.slots == 0 {
            return None;
        }
        let draw = rng.next_u64();
        let slot = (((draw >> 32) * u64::from(self.slots)) >> 32) as usize;
        if self.alias.threshold.is_empty() {
            return Some(slot);
        }
        let coin = draw as u32;
        match (self.alias.threshold.get(slot), self.alias.alias.get(slot)) {
            (Some(&threshold), _) if coin < threshold || threshold == u32::MAX => Some(slot),
            (_, Some(&other)) => Some(other as usize),
            _ => Some(slot),
        }
    }
}

impl AliasTable {
    /// Vose's alias construction for weights 1 / (k + 1)^s, k in 0..n.
    fn zipf(n: u32, s: f64) -> Self {
        let len = n as usize;
        if len == 0 {
            return AliasTable::default();
        }
        let weights: Vec<f64> = (0..len).map(|k| ((k + 1) as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        // Scaled so the average slot holds exactly 1.
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * len as f64 / total).collect();
        let mut threshold = vec![u32::MAX; len];
        let mut alias: Vec<u32> = (0..n).collect();
        let (mut small, mut large): (Vec<u32>, Vec<u32>) =
            (0..n).partition(|&i| scaled[i as usize] < 1.0);
        while let (Some(&under), Some(&over)) = (small.last(), large.last()) {
            small.pop();
            let (u, o) = (under as usize, over as usize);
            threshold[u] = probability_to_threshold(scaled[u]);
            alias[u] = over;
            scaled[o] -= 1.0 - scaled[u];
            if scaled[o] < 1.0 {
                large.pop();
                small.push(over);
            }
        }
        // What is left (rounding residue) keeps its own slot with probability 1.
        for i in small.into_iter().chain(large) {
            threshold[i as usize] = u32::MAX;
        }
        AliasTable { threshold, alias }
    }
}

fn probability_to_threshold(p: f64) -> u32 {
    let scaled = (p.clamp(0.0, 1.0) * 4_294_967_296.0).round();
    if scaled >= 4_294_967_295.0 {
        u32::MAX
    } else {
        scaled as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(picker: &FlowPicker, draws: usize) -> Vec<u64> {
        let mut rng = SplitMix64::new(11);
        let mut counts = vec![0u64; picker.slots() as usize];
        for _ in 0..draws {
            counts[picker.pick(&mut rng).expect("slots exist")] += 1;
        }
        counts
    }

    #[test]
    fn uniform_spreads_evenly() {
        let counts = histogram(&FlowPicker::new(8, Distribution::Uniform, 1.1), 80_000);
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn zipf_matches_its_weights() {
        let n = 100u32;
        let s = 1.1;
        let draws = 400_000usize;
        let counts = histogram(&FlowPicker::new(n, Distribution::Zipf, s), draws);
        let total: f64 = (1..=n).map(|k| f64::from(k).powf(-s)).sum();
        for k in [0usize, 1, 4, 49, 99] {
            let expected = ((k + 1) as f64).powf(-s) / total * draws as f64;
            let got = counts[k] as f64;
            assert!(
                (got - expected).abs() < 5.0 * expected.sqrt() + 0.01 * expected,
                "slot {k}: got {got}, expected {expected}"
            );
        }
        // The top flow gets far more than 1/n of the packets.
        assert!(counts[0] as f64 > 10.0 * draws as f64 / f64::from(n));
    }

    #[test]
    fn no_slots_no_pick_and_single_slot() {
        let mut rng = SplitMix64::new(1);
        assert_eq!(
            FlowPicker::new(0, Distribution::Zipf, 1.0).pick(&mut rng),
            None
        );
        assert_eq!(
            FlowPicker::new(0, Distribution::Uniform, 1.0).pick(&mut rng),
            None
        );
        let one = FlowPicker::new(1, Distribution::Zipf, 3.0);
        assert!((0..100).all(|_| one.pick(&mut rng) == Some(0)));
    }

    #[test]
    fn steep_exponent_stays_in_range() {
        let picker = FlowPicker::new(1000, Distribution::Zipf, 10.0);
        let counts = histogram(&picker, 10_000);
        assert!(
            counts[0] > 9_900,
            "s = 10 puts nearly everything on the top flow: {}",
            counts[0]
        );
    }
}
