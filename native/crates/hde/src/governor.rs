//! Chooses the codec level from where the encoder's time goes.
//!
//! Compression buys wire bytes with CPU. While the link is the bottleneck (the encoder waits for
//! the sender to take its output) that is a good trade, and the configured level stays. Once the
//! encoder itself is the bottleneck (busy nearly all the time, never waiting for the sender, as on
//! a datacenter link faster than zstd on one core), every byte it compresses slows the whole
//! migration, so the governor steps down a ladder of cheaper codecs (zstd 1, lz4, none), and back
//! up when the sender pushes back again.
//!
//! Sans-IO: the caller measures the time it spent encoding and the time it spent blocked handing
//! output on, and passes them in with the clock.

use std::time::{Duration, Instant};

use crate::{Codec, CodecLevel};

/// How long one verdict's window lasts.
pub const GOVERNOR_INTERVAL: Duration = Duration::from_millis(100);
/// Busy this share of a window, and never blocked on output: the encoder is the bottleneck.
const ENCODER_BOUND_BUSY: f64 = 0.85;
const ENCODER_BOUND_MAX_BLOCKED: f64 = 0.05;
/// Blocked on output this share of a window: the link is the bottleneck again.
const LINK_BOUND_BLOCKED: f64 = 0.4;

/// Why the governor last changed the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    /// The encoder was busy and the sender idle: a cheaper codec.
    EncoderBound,
    /// The sender pushed back: more compression, up to the configured level.
    LinkBound,
}

/// The codec level for the next chunks of one stream.
#[derive(Debug, Clone)]
pub struct CodecGovernor {
    /// From the configured level (index 0) to the cheapest.
    ladder: Vec<CodecLevel>,
    rung: usize,
    window_start: Option<Instant>,
    busy: Duration,
    blocked: Duration,
    changes: u32,
    last_change: Option<LevelChange>,
}

impl CodecGovernor {
    /// Starts at `configured`; never goes above it.
    pub fn new(configured: CodecLevel) -> Self {
        CodecGovernor {
            ladder: ladder(configured),
            rung: 0,
            window_start: None,
            busy: Duration::ZERO,
            blocked: Duration::ZERO,
            changes: 0,
            last_change: None,
        }
    }

    /// A governor that keeps `level` whatever happens.
    pub fn fixed(level: CodecLevel) -> Self {
        CodecGovernor {
            ladder: vec![level],
            ..CodecGovernor::new(level)
        }
    }

    /// The level to encode with now.
    pub fn level(&self) -> CodecLevel {
        self.ladder[self.rung]
    }

    /// How many times the level changed.
    pub fn changes(&self) -> u32 {
        self.changes
    }

    /// Why it last changed, if it did.
    pub fn last_change(&self) -> Option<LevelChange> {
        self.last_change
    }

    /// Adds time spent encoding (`busy`) and blocked handing output to the sender (`blocked`),
    /// as of `now`. At the end of each window it returns the new level when it changed.
    pub fn record(
        &mut self,
        busy: Duration,
        blocked: Duration,
        now: Instant,
    ) -> Option<CodecLevel> {
        let start = *self.window_start.get_or_insert(now);
        self.busy += busy;
        self.blocked += blocked;
        let wall = now.saturating_duration_since(start);
        if wall < GOVERNOR_INTERVAL {
            return None;
        }
        let busy_share = self.busy.as_secs_f64() / wall.as_secs_f64();
        let blocked_share = self.blocked.as_secs_f64() / wall.as_secs_f64();
        self.window_start = Some(now);
        self.busy = Duration::ZERO;
        self.blocked = Duration::ZERO;
        let (rung, why) = if busy_share >= ENCODER_BOUND_BUSY
            && blocked_share <= ENCODER_BOUND_MAX_BLOCKED
            && self.rung + 1 < self.ladder.len()
        {
            (self.rung + 1, LevelChange::EncoderBound)
        } else if blocked_share >= LINK_BOUND_BLOCKED && self.rung > 0 {
            (self.rung - 1, LevelChange::LinkBound)
        } else {
            return None;
        };
        self.rung = rung;
        self.changes += 1;
        self.last_change = Some(why);
        Some(self.level())
    }
}

/// `configured`, then the cheaper steps below it: zstd 1 (from a higher zstd level), lz4, none.
fn ladder(configured: CodecLevel) -> Vec<CodecLevel> {
    let mut steps = vec![configured];
    let mut push = |l: CodecLevel| {
        if !steps.contains(&l) {
            steps.push(l);
        }
    };
    match configured.codec() {
        Codec::Zstd => {
            if configured.level() > 1 {
                push(CodecLevel::fast(Codec::Zstd));
            }
            push(CodecLevel::fast(Codec::Lz4));
            push(CodecLevel::fast(Codec::None));
        }
        // Deflate is what the pure-JS peer decodes; `none` it decodes too.
        Codec::Lz4 | Codec::Deflate => push(CodecLevel::fast(Codec::None)),
        _ => {}
    }
    steps
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn zstd(level: i32) -> CodecLevel {
        CodecLevel::new(Codec::Zstd, level).unwrap()
    }

    /// Feeds `windows` windows of 100 ms with this much busy and blocked time, in 10 ms steps.
    fn run(
        g: &mut CodecGovernor,
        t: &mut Instant,
        busy_ms: u64,
        blocked_ms: u64,
    ) -> Vec<CodecLevel> {
        let mut changes = Vec::new();
        for _ in 0..10 {
            *t += Duration::from_millis(10);
            let (busy, blocked) = (
                Duration::from_micros(busy_ms * 100),
                Duration::from_micros(blocked_ms * 100),
            );
            if let Some(l) = g.record(busy, blocked, *t) {
                changes.push(l);
            }
        }
        changes
    }

    #[test]
    fn an_encoder_bound_stream_steps_down_one_rung_per_window_to_none() {
        let mut g = CodecGovernor::new(zstd(3));
        let mut t = Instant::now();
        g.record(Duration::ZERO, Duration::ZERO, t);
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend(run(&mut g, &mut t, 98, 0));
        }
        assert_eq!(
            seen,
            vec![
                zstd(1),
                CodecLevel::fast(Codec::Lz4),
                CodecLevel::fast(Codec::None)
            ]
        );
        assert_eq!(g.changes(), 3);
        assert_eq!(g.last_change(), Some(LevelChange::EncoderBound));
    }

    #[test]
    fn a_link_bound_stream_keeps_its_level_and_climbs_back_to_it() {
        let mut g = CodecGovernor::new(zstd(1));
        let mut t = Instant::now();
        g.record(Duration::ZERO, Duration::ZERO, t);
        assert!(
            run(&mut g, &mut t, 50, 50).is_empty(),
            "link-bound from the start"
        );
        assert_eq!(g.level(), zstd(1));
        assert_eq!(
            run(&mut g, &mut t, 95, 1),
            vec![CodecLevel::fast(Codec::Lz4)]
        );
        assert_eq!(run(&mut g, &mut t, 40, 60), vec![zstd(1)]);
        assert_eq!(g.last_change(), Some(LevelChange::LinkBound));
        assert!(
            run(&mut g, &mut t, 40, 60).is_empty(),
            "never above the configured level"
        );
        assert_eq!(g.level(), zstd(1));
    }

    #[test]
    fn a_stream_waiting_for_qemu_keeps_its_level() {
        let mut g = CodecGovernor::new(zstd(1));
        let mut t = Instant::now();
        g.record(Duration::ZERO, Duration::ZERO, t);
        assert!(run(&mut g, &mut t, 30, 0).is_empty());
        assert_eq!(g.changes(), 0);
    }

    #[test]
    fn a_fixed_governor_and_the_bottom_rung_never_move() {
        let mut g = CodecGovernor::fixed(zstd(1));
        let mut t = Instant::now();
        g.record(Duration::ZERO, Duration::ZERO, t);
        assert!(run(&mut g, &mut t, 100, 0).is_empty());
        let mut none = CodecGovernor::new(CodecLevel::fast(Codec::None));
        none.record(Duration::ZERO, Duration::ZERO, t);
        assert!(run(&mut none, &mut t, 100, 0).is_empty());
        assert_eq!(
            ladder(CodecLevel::fast(Codec::Deflate)),
            vec![
                CodecLevel::fast(Codec::Deflate),
                CodecLevel::fast(Codec::None)
            ]
        );
    }
}
