//! `check --config`'s warnings about `[pool.target]`: a setting that works but that the operator
//! probably did not mean. Warnings never change the exit code.
//!
//! **A tolerance band that swallows a whole VM.** With `n` ready VMs and the metric at
//! `ratio = metric / target`, the HPA formula gives `ceil(n × ratio)`. At `max` VMs, one VM fewer
//! is enough as soon as `ratio ≤ 1 − 1/max` (then `ceil(max × ratio) ≤ max − 1` and the metric
//! on `max − 1` VMs is at most the target). The band keeps the size while
//! `ratio ≥ 1 − tolerance`. So when `tolerance ≥ 1/max` there is a range of load,
//! `target × (1 − tolerance) ≤ metric ≤ target × (1 − 1/max)`, where the pool stays one VM larger
//! than the target needs, for as long as the load stays there.

use crate::config::Config;

/// One warning per pool whose band is at least one VM's share at `max`.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = vec![];
    for pool in &config.pools {
        let Some(t) = &pool.target else { continue };
        let share = 1.0 / f64::from(pool.max);
        // The same epsilon as the band's edges in `pool::target`.
        if t.tolerance + 1e-9 >= share {
            let low = t.target * (1.0 - t.tolerance);
            let high = t.target * (1.0 - share);
            out.push(format!(
                "pool {:?}.target.tolerance: {} is at least one VM's share at max = {} (1/{} = {:.3}): \
                 with {} VMs a metric from {} to {} (target {} × (1 − {}) to × (1 − 1/{})) keeps {} VMs \
                 where {} would hold it at or below the target; use a tolerance below {:.3} or a larger max",
                pool.name,
                t.tolerance,
                pool.max,
                pool.max,
                share,
                pool.max,
                figure(low),
                figure(high),
                t.target,
                t.tolerance,
                pool.max,
                pool.max,
                pool.max - 1,
                share,
            ));
        }
    }
    out
}

/// A metric value with at most 3 decimals and no trailing zeros.
fn figure(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: u32, target: &str) -> Config {
        Config::parse(&format!(
            "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"s\"\nmax = {max}\n\
             [pool.target]\nprometheus_url = \"http://127.0.0.1:9090\"\nquery = \"up\"\n{target}\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_band_wider_than_one_vm_at_max_is_a_warning_with_the_figures() {
        // max 10: one VM is 10% of the pool, the default band is ±10%.
        let w = warnings(&config(10, "target = 60"));
        assert_eq!(w.len(), 1, "{w:?}");
        let w = &w[0];
        assert!(
            w.starts_with("pool \"web\".target.tolerance: 0.1 is at least"),
            "{w}"
        );
        assert!(w.contains("max = 10 (1/10 = 0.100)"), "{w}");
        assert!(w.contains("from 54 to 54"), "{w}");
        assert!(w.contains("keeps 10 VMs where 9 would"), "{w}");
        let w = warnings(&config(20, "target = 60\ntolerance = 0.15"));
        assert!(w[0].contains("from 51 to 57 "), "{w:?}");
        assert!(w[0].contains("below 0.050"), "{w:?}");
    }

    #[test]
    fn a_band_narrower_than_one_vm_is_quiet() {
        for (max, target) in [
            (5, "target = 60"),
            (9, "target = 60"),
            (10, "target = 60\ntolerance = 0.05"),
            (1, "target = 60\ntolerance = 0.9"),
            (20, "target = 0.5\ntolerance = 0"),
        ] {
            assert_eq!(
                warnings(&config(max, target)),
                Vec::<String>::new(),
                "{max} {target}"
            );
        }
        let plain =
            Config::parse("[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"s\"\nmax = 50\n")
                .unwrap();
        assert!(warnings(&plain).is_empty(), "no [pool.target], no warning");
    }

    /// The condition matches the algorithm: where the warning fires there is a metric inside the
    /// band at `max` VMs that `max − 1` VMs would hold at or below the target.
    #[test]
    fn the_warning_matches_the_algorithm() {
        use crate::pool::target::{recommend, Input, Observation, Policy, Reason, Window};
        for max in [2u32, 4, 5, 8, 10, 12, 20] {
            for tolerance in [0.0, 0.05, 0.1, 0.125, 0.2, 0.25, 0.5] {
                let c = config(max, &format!("target = 60\ntolerance = {tolerance}"));
                let warned = !warnings(&c).is_empty();
                let p = Policy::new(c.pools[0].target.as_ref().unwrap());
                // Is there a metric in the band where max - 1 VMs would be at most the target?
                let stuck = (0..=1000).any(|i| {
                    let metric =
                        60.0 * (1.0 - tolerance) + f64::from(i) * 60.0 * tolerance / 1000.0;
                    let input = Input {
                        observation: Observation::Sample {
                            value: metric,
                            at: 0.0,
                        },
                        ready: max,
                        desired: max,
                        min: 1,
                        max,
                    };
                    let r = recommend(&p, &input, &mut Window::default(), 0.0);
                    r.reason == Reason::WithinTolerance
                        && metric * f64::from(max) / f64::from(max - 1) <= 60.0 + 1e-9
                });
                assert_eq!(warned, stuck, "max {max}, tolerance {tolerance}");
            }
        }
    }
}
