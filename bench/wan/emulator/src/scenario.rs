//! Named paths the benches run against. Every value applies to each direction on its own, so a
//! round trip sees twice the delay and about twice the loss.

use serde::Serialize;

/// One named set of path parameters; explicit CLI flags override any of them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scenario {
    /// Name used with `--scenario`.
    pub name: &'static str,
    /// What this path stands for.
    pub about: &'static str,
    /// One-way delay.
    pub delay_ms: f64,
    /// One-way jitter (see `--jitter-dist`).
    pub jitter_ms: f64,
    /// Per-direction loss probability.
    pub loss: f64,
    /// Bottleneck rate.
    pub rate_mbit: f64,
    /// Bottleneck queue, in milliseconds at the bottleneck rate.
    pub queue_ms: f64,
    /// TUN MTU: jumbo frames where they are normal (inside a datacenter), 1500 across the internet.
    pub mtu: u32,
}

/// The built-in scenarios, fastest first.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "datacenter",
        about: "same-site hosts: 0.5 ms one way, no loss, 10 Gbit/s, jumbo frames",
        delay_ms: 0.5,
        jitter_ms: 0.0,
        loss: 0.0,
        rate_mbit: 10_000.0,
        // A few MB of switch buffer, like a shallow-buffered top-of-rack switch.
        queue_ms: 2.0,
        mtu: 9000,
    },
    Scenario {
        name: "regional",
        about: "nearby regions: 10 ms one way, 0.1% loss, 1 Gbit/s",
        delay_ms: 10.0,
        jitter_ms: 0.0,
        loss: 0.001,
        rate_mbit: 1000.0,
        queue_ms: 20.0,
        mtu: 1500,
    },
    Scenario {
        name: "internet",
        about: "across the internet: 50 ms one way (100 ms RTT), 1% loss, 100 Mbit/s",
        delay_ms: 50.0,
        jitter_ms: 0.0,
        loss: 0.01,
        rate_mbit: 100.0,
        // One RTT of buffer: the classic rule of thumb for a WAN bottleneck.
        queue_ms: 100.0,
        mtu: 1500,
    },
    Scenario {
        name: "bad-internet",
        about: "a poor long-haul path: 150 ms one way, 10 ms jitter, 2% loss, 50 Mbit/s",
        delay_ms: 150.0,
        jitter_ms: 10.0,
        loss: 0.02,
        rate_mbit: 50.0,
        queue_ms: 100.0,
        mtu: 1500,
    },
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// The names, for error messages.
pub fn names() -> String {
    SCENARIOS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        for s in SCENARIOS {
            assert_eq!(find(s.name).map(|f| f.name), Some(s.name));
        }
        assert!(find("moon").is_none());
        assert_eq!(names(), "datacenter, regional, internet, bad-internet");
    }
}
