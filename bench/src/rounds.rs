//! Several rounds of one cell, and the one the report keeps.
//!
//! This machine's speed moves by ±20% and more from one minute to the next, and a swing
//! that falls on one system's turn decides a comparison between systems. So each cell runs
//! its systems in turns, more than once, starting the turns with a different system each
//! round, and the report keeps for each system its median round by delivered records/s:
//! one swing moves no figure.
//!
//! Its deliveries per CPU-second are the median of the rounds' own figures, not the kept
//! round's: at most cells the server is not saturated (the subscribers' core is), and how
//! much CPU it spends per delivery then moves from round to round apart from the rate
//! (runs of 2026-12-03: 0.98 to 1.72 M for one system and cell at about the same rate, much
//! of it the old span's, `cell/span.rs`), so the round in the middle by rate may hold either
//! end of that spread.
//!
//! Much of that swing is the hypervisor's: this machine is a guest, and at times half of
//! its CPU time is stolen (runs of 2026-12-03: 5% to 55% of each second under load). A
//! round whose saturation span lost more than `--max-steal-pct` of the machine is run
//! again, at most [`MAX_RERUNS`] times, and the least stolen attempt kept ([`run_again`],
//! [`keep`]).

use crate::cell::CellResult;

/// How many times one round may be run again for steal: a spell of steal that outlasts it
/// is recorded (the report's steal column), not waited out.
pub const MAX_RERUNS: usize = 2;

/// Whether an attempt at a round is to be measured again: it ran clean (a failure, a gap or
/// a repeat is never measured away) and the hypervisor stole more than `max_steal_pct` of
/// the machine's CPU time over its saturation span.
pub fn run_again(attempt: &CellResult, max_steal_pct: f64) -> bool {
    clean(attempt) && attempt.sat_steal_pct > max_steal_pct
}

/// The attempt that stands for a round: the first that failed, lost or repeated records if
/// any did (never hidden), else the least stolen.
pub fn keep(attempts: Vec<CellResult>) -> Option<CellResult> {
    let (clean, flawed): (Vec<_>, Vec<_>) = attempts.into_iter().partition(clean);
    flawed.into_iter().next().or_else(|| {
        clean
            .into_iter()
            .min_by(|a, b| a.sat_steal_pct.total_cmp(&b.sat_steal_pct))
    })
}

/// No failure, gap or repeat.
fn clean(attempt: &CellResult) -> bool {
    attempt.error.is_empty() && attempt.gaps == 0 && attempt.repeats == 0
}

/// The order of `count` systems (their indices) for round `round`: rotated by one each
/// round, so that no system always runs first, right after the previous cell's servers went
/// away.
pub fn order(count: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |at| (at + round) % count)
}

/// The round of one system's cell to report: the median of the rounds that did not fail by
/// delivered records/s (the lower middle one of an even count), with the gaps and repeats
/// of every round, so that a round that lost or repeated records is never hidden. When every
/// round failed, the first failure. Its deliveries per CPU-second are the median of the
/// figures of the rounds that did not fail (a round without one, 0, does not count).
pub fn median(rounds: Vec<CellResult>) -> Option<CellResult> {
    let gaps = rounds.iter().map(|round| round.gaps).sum();
    let repeats = rounds.iter().map(|round| round.repeats).sum();
    let (mut ok, failed): (Vec<_>, Vec<_>) =
        rounds.into_iter().partition(|round| round.error.is_empty());
    if ok.is_empty() {
        return failed.into_iter().next();
    }
    let middle = lower_middle(ok.len());
    let mut per_cpu_s: Vec<f64> = ok
        .iter()
        .map(|round| round.deliveries_per_cpu_s)
        .filter(|&figure| figure > 0.0)
        .collect();
    per_cpu_s.sort_by(f64::total_cmp);
    ok.sort_by(|a, b| a.sat_records_per_s.total_cmp(&b.sat_records_per_s));
    let mut kept = ok.swap_remove(middle);
    kept.deliveries_per_cpu_s = match per_cpu_s.len() {
        0 => 0.0,
        measured => per_cpu_s[lower_middle(measured)],
    };
    kept.gaps = gaps;
    kept.repeats = repeats;
    Some(kept)
}

/// The index of the median of `count` sorted values (the lower middle one of an even count).
fn lower_middle(count: usize) -> usize {
    (count - 1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(rate: f64, gaps: u64, error: &str) -> CellResult {
        CellResult {
            sat_records_per_s: rate,
            gaps,
            error: error.into(),
            ..CellResult::default()
        }
    }

    #[test]
    fn each_round_starts_with_another_system() {
        let order = |count, round| order(count, round).collect::<Vec<_>>();
        assert_eq!(order(4, 0), [0, 1, 2, 3]);
        assert_eq!(order(4, 1), [1, 2, 3, 0]);
        assert_eq!(order(4, 5), order(4, 1));
        assert!(order(0, 3).is_empty());
    }

    #[test]
    fn a_stolen_round_is_run_again_and_the_least_stolen_kept() {
        let attempt = |steal: f64, gaps: u64, error: &str| CellResult {
            sat_steal_pct: steal,
            ..round(1_000.0 - steal, gaps, error)
        };
        assert!(run_again(&attempt(30.0, 0, ""), 25.0));
        assert!(!run_again(&attempt(20.0, 0, ""), 25.0));
        assert!(!run_again(&attempt(30.0, 1, ""), 25.0), "gaps are kept");
        assert!(!run_again(&attempt(30.0, 0, "refused"), 25.0));
        let kept = keep(vec![
            attempt(40.0, 0, ""),
            attempt(10.0, 0, ""),
            attempt(30.0, 0, ""),
        ]);
        assert_eq!(kept.expect("attempts").sat_steal_pct, 10.0);
        // An attempt that lost records stands for the round, however little was stolen
        // from the others.
        let kept = keep(vec![
            attempt(40.0, 0, ""),
            attempt(35.0, 3, ""),
            attempt(5.0, 0, ""),
        ]);
        assert_eq!(kept.expect("attempts").gaps, 3);
        assert!(keep(Vec::new()).is_none());
    }

    #[test]
    fn the_median_round_is_kept_with_every_rounds_gaps() {
        let kept = median(vec![
            round(900.0, 0, ""),
            round(500.0, 2, ""),
            round(700.0, 0, ""),
        ])
        .expect("three rounds");
        assert_eq!(kept.sat_records_per_s, 700.0);
        assert_eq!(kept.gaps, 2, "the slow round's gaps are reported");
        // Two rounds: the lower one; a failed round does not count.
        let kept = median(vec![
            round(900.0, 0, ""),
            round(0.0, 0, "refused"),
            round(500.0, 0, ""),
        ])
        .expect("two rounds ran");
        assert_eq!(kept.sat_records_per_s, 500.0);
        let failed = median(vec![round(0.0, 0, "refused"), round(0.0, 0, "timed out")])
            .expect("a failure is reported");
        assert_eq!(failed.error, "refused");
        assert!(median(Vec::new()).is_none());
    }

    #[test]
    fn deliveries_per_cpu_second_are_the_median_of_the_rounds_own() {
        let round = |rate: f64, per_cpu_s: f64| CellResult {
            sat_records_per_s: rate,
            deliveries_per_cpu_s: per_cpu_s,
            ..CellResult::default()
        };
        let kept = |rounds: &[(f64, f64)]| {
            median(
                rounds
                    .iter()
                    .map(|&(rate, figure)| round(rate, figure))
                    .collect(),
            )
            .expect("rounds")
        };
        // The middle round by rate spent the most CPU per delivery.
        let three = kept(&[(500.0, 1_600.0), (700.0, 980.0), (900.0, 1_700.0)]);
        assert_eq!(three.sat_records_per_s, 700.0);
        assert_eq!(three.deliveries_per_cpu_s, 1_600.0);
        // A round without a figure (records lost in its span) does not count.
        let lost = kept(&[(500.0, 1_600.0), (700.0, 0.0), (900.0, 1_700.0)]);
        assert_eq!(lost.deliveries_per_cpu_s, 1_600.0);
        assert_eq!(kept(&[(500.0, 0.0)]).deliveries_per_cpu_s, 0.0);
    }
}
