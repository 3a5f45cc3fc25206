//! Thrash checks of Prometheus alert rule files: `idch-autoscaler check --config FILE --rules FILE`.
//!
//! A rule file that does not parse is an error (the file and why). A file that parses is checked
//! for rules that invite thrashing; each finding is a warning on stderr and does not change the
//! exit code. Expressions are parsed with `promql-parser` and the checks read its AST; an
//! expression it rejects is an error with its message. Durations use its grammar too.
//!
//! **Which rules are autoscaling rules.** An alerting rule with the label `autoscale: up` or
//! `autoscale: down` (the label the shipped `prometheus/alertmanager.yml` routes on). Without that
//! label, an alert whose name contains `ScaleUp` / `ScaleDown` (case-insensitive; `_`, `-` and `.`
//! are ignored, so `scale_up` and `Scale-Down` count too). Recording rules are never scaling
//! rules, but an alert may use them (see windows below).
//!
//! **What is checked.**
//! - The scale-down threshold must be at most half the scale-up threshold minus 5 points (70% up
//!   means at most 30% down): a pool at the scale-up threshold on one VM shows half of it on two,
//!   and must not scale back down. Thresholds are read from the top-level comparison of `expr`
//!   with a number (`expr > 0.7`, `0.3 > expr`, `expr < 30`): a number up to 1 is a ratio (0.7 is
//!   70%), a larger one a percentage. A scale-up rule that compares with `<` (and a scale-down rule
//!   with `>`) is read as an inverted metric, e.g. idle CPU: `idle < 0.3` is a load above 70%.
//!   Each scale-down rule is compared with the scale-up rules of its group, else of its file, else
//!   of all the files given; among those, with the ones on the same metrics when there are some.
//! - A scale-down rule must have a `for` period (not zero), and an averaging window: a range
//!   selector or subquery under a function that averages it (`rate`, `increase`, `avg_over_time`,
//!   ...; not `irate`, `idelta`, `last_over_time`, ...), directly or in a recording rule it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promql_parser::label::{MatchOp, METRIC_NAME};
use promql_parser::parser::{BinaryExpr, Expr};
use serde::Deserialize;

/// The label that says which way an alert scales.
pub const AUTOSCALE_LABEL: &str = "autoscale";

/// How far the scale-down threshold must stay below half the scale-up threshold, in points.
pub const MARGIN_POINTS: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "scale-up",
            Direction::Down => "scale-down",
        }
    }
}

/// A comparison operator of PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    /// `a op b` is `b op.flip() a`.
    fn flip(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            other => other,
        }
    }
    fn is_greater(self) -> bool {
        matches!(self, CmpOp::Gt | CmpOp::Ge)
    }
    fn is_less(self) -> bool {
        matches!(self, CmpOp::Lt | CmpOp::Le)
    }
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// The threshold of a scaling rule, as written and as a load level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The comparison, normalized to `expr OP value`.
    pub op: CmpOp,
    /// The number as written.
    pub value: f64,
    /// The value in points: a ratio up to 1 times 100, a larger number as it is.
    pub points: f64,
    /// The rule compares the other way round (scale up below a value): an inverted metric such
    /// as idle CPU, so the load level is `100 - points`.
    pub inverted: bool,
}

impl Threshold {
    /// The load level the threshold stands for, in points; `None` for an inverted threshold that
    /// is not a percentage.
    pub fn load_points(&self) -> Option<f64> {
        if !self.inverted {
            Some(self.points)
        } else if (0.0..=100.0).contains(&self.points) {
            Some(100.0 - self.points)
        } else {
            None
        }
    }
}

/// One autoscaling alert rule, as far as the checks need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRule {
    pub group: String,
    pub name: String,
    pub direction: Direction,
    /// Recognized by the `autoscale` label (else by its name).
    pub by_label: bool,
    pub expr: String,
    /// `None` when the rule has no `for`.
    pub hold: Option<Duration>,
    pub threshold: Option<Threshold>,
    /// The expression averages over a window (directly or through a recording rule of the file).
    pub has_window: bool,
    /// Metric names the expression reads (recording rules expanded).
    pub metrics: BTreeSet<String>,
}

/// A parsed rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    /// How the file is named in messages.
    pub name: String,
    pub groups: usize,
    pub alerts: usize,
    pub records: usize,
    pub scale_rules: Vec<ScaleRule>,
    /// Findings that do not depend on the other files (e.g. an unknown `autoscale` value).
    notes: Vec<Warning>,
}

/// A finding: where, and what invites thrashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    /// Group and alert name, when the finding is about one rule.
    pub rule: Option<(String, String)>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some((group, name)) => write!(
                f,
                "{}: alert {name} (group {group:?}): {}",
                self.file, self.message
            ),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

// ---- the YAML shape (Prometheus' rulefmt) -------------------------------------------------------

/// Any YAML scalar, as text (`for: 5m`, `expr: 1`, `severity: 3`).
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml_ng::Value::deserialize(d)? {
            serde_yaml_ng::Value::String(s) => Ok(Scalar(s)),
            serde_yaml_ng::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_yaml_ng::Value::Bool(b) => Ok(Scalar(b.to_string())),
            serde_yaml_ng::Value::Null => Ok(Scalar(String::new())),
            _ => Err(D::Error::custom("expected a string")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    groups: Option<Vec<RawGroup>>,
}

/// Group keys other than `name` and `rules` (interval, limit, query_offset, labels, ...) are
/// accepted and ignored: they differ between Prometheus versions and do not matter here.
#[derive(Deserialize)]
struct RawGroup {
    name: Option<Scalar>,
    rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    alert: Option<Scalar>,
    record: Option<Scalar>,
    expr: Option<Scalar>,
    #[serde(rename = "for")]
    hold: Option<Scalar>,
    keep_firing_for: Option<Scalar>,
    labels: Option<BTreeMap<String, Scalar>>,
    #[allow(dead_code)]
    annotations: Option<BTreeMap<String, Scalar>>,
}

/// Parses a Prometheus duration as rule files take it (`5m`, `1h30m`, `2d`, `500ms`, `0`, `0s`),
/// with promql-parser's grammar. Unlike a PromQL range, a `for` may be zero, and a bare number
/// (which PromQL reads as seconds) is not a duration here.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("an empty duration".into());
    }
    let bad = |why: &str| format!("{text:?} is not a duration (like 30s, 5m, 1h30m): {why}");
    if s.parse::<f64>().is_ok() {
        return Err(bad("the unit is missing"));
    }
    promql_parser::util::parse_duration(s).or_else(|why| {
        // `0s`, `0h0m`: well-formed (the same with ones is) but zero, which ranges refuse.
        let zero = !s.bytes().any(|b| b.is_ascii_digit() && b != b'0');
        if zero && promql_parser::util::parse_duration(&s.replace('0', "1")).is_ok() {
            Ok(Duration::ZERO)
        } else {
            Err(bad(&why))
        }
    })
}

// ---- PromQL, through promql-parser's AST --------------------------------------------------------

/// The expressions directly under `e`.
fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => a.param.iter().chain([&a.expr]).map(|b| &**b).collect(),
        Expr::Unary(u) => vec![&*u.expr],
        Expr::Binary(b) => vec![&*b.lhs, &*b.rhs],
        Expr::Paren(p) => vec![&*p.expr],
        Expr::Subquery(s) => vec![&*s.expr],
        Expr::Call(c) => c.args.args.iter().map(|a| &**a).collect(),
        Expr::Extension(x) => x.expr.children().iter().collect(),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_) => Vec::new(),
    }
}

/// Drops parentheses: `((x))` is `x`.
fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// The value of a number literal (`0.7`, `-1`, `(70)`).
fn literal(e: &Expr) -> Option<f64> {
    match unparen(e) {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Unary(u) => literal(&u.expr).map(|v| -v),
        _ => None,
    }
}

fn cmp_op(b: &BinaryExpr) -> Option<CmpOp> {
    Some(match b.op.to_string().as_str() {
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Ge,
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Le,
        "==" => CmpOp::Eq,
        "!=" => CmpOp::Ne,
        _ => return None,
    })
}

/// Top-level comparisons with a number, normalized to `expr OP value`, left to right: through
/// parentheses, `and` / `or` / `unless`, and chained comparisons, not into calls or arithmetic.
fn comparisons(e: &Expr, found: &mut Vec<(CmpOp, f64)>) {
    let Expr::Binary(b) = unparen(e) else { return };
    if b.op.is_set_operator() {
        comparisons(&b.lhs, found);
        comparisons(&b.rhs, found);
        return;
    }
    let Some(op) = cmp_op(b) else { return };
    comparisons(&b.lhs, found);
    if let Some(v) = literal(&b.rhs) {
        found.push((op, v));
    } else if let Some(v) = literal(&b.lhs) {
        found.push((op.flip(), v));
    }
    comparisons(&b.rhs, found);
}

/// Functions that take a range but do not average over it.
const NOT_AVERAGING: &[&str] = &[
    "irate",
    "idelta",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "absent_over_time",
    "changes",
    "resets",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
];

/// Whether a range selector or subquery is the argument of a function that averages over it.
fn averages_directly(e: &Expr) -> bool {
    if let Expr::Call(c) = e {
        if !NOT_AVERAGING.contains(&c.func.name)
            && c.args
                .args
                .iter()
                .any(|a| matches!(unparen(a), Expr::MatrixSelector(_) | Expr::Subquery(_)))
        {
            return true;
        }
    }
    children(e).into_iter().any(averages_directly)
}

/// Metric names (and recording-rule names) the expression reads, `{__name__="x"}` included.
fn metric_names(e: &Expr, names: &mut BTreeSet<String>) {
    let selector = match e {
        Expr::VectorSelector(v) => Some(v),
        Expr::MatrixSelector(m) => Some(&m.vs),
        _ => None,
    };
    if let Some(v) = selector {
        let by_matcher = v
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
            .map(|m| &m.value);
        names.extend(v.name.as_ref().or(by_matcher).cloned());
    }
    for c in children(e) {
        metric_names(c, names);
    }
}

// ---- parsing a file -----------------------------------------------------------------------------

/// What an alert's labels and name say about its direction.
fn direction_of(
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Option<(Direction, bool)>, String> {
    if let Some(v) = labels.get(AUTOSCALE_LABEL) {
        return match v.trim().to_ascii_lowercase().as_str() {
            "up" => Ok(Some((Direction::Up, true))),
            "down" => Ok(Some((Direction::Down, true))),
            _ => Err(format!(
                "label {AUTOSCALE_LABEL}: {v:?} is neither \"up\" nor \"down\"; the alert is not checked"
            )),
        };
    }
    let folded: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    Ok(if folded.contains("scaleup") {
        Some((Direction::Up, false))
    } else if folded.contains("scaledown") {
        Some((Direction::Down, false))
    } else {
        None
    })
}

struct PendingRule {
    rule: ScaleRule,
    ast: Expr,
}

/// Parses a rule file's text. `name` is how the file is called in messages.
pub fn parse_rule_file(name: &str, text: &str) -> Result<RuleFile, String> {
    let raw: Option<RawFile> = if text.trim().is_empty() {
        None
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| format!("not a Prometheus rule file: {e}"))?
    };
    let groups = raw.and_then(|r| r.groups).unwrap_or_default();
    let mut seen_groups = BTreeSet::new();
    let mut records: BTreeMap<String, Expr> = BTreeMap::new();
    let mut pending: Vec<PendingRule> = Vec::new();
    let mut notes = Vec::new();
    let (mut alerts, mut record_count) = (0, 0);
    for (gi, group) in groups.iter().enumerate() {
        let gname = group
            .name
            .as_ref()
            .map(|s| s.0.trim().to_string())
            .unwrap_or_default();
        if gname.is_empty() {
            return Err(format!("groups[{gi}]: the group has no name"));
        }
        if !seen_groups.insert(gname.clone()) {
            return Err(format!("group {gname:?} is defined twice"));
        }
        for (ri, rule) in group.rules.iter().flatten().enumerate() {
            let at = format!("group {gname:?}, rules[{ri}]");
            let alert = rule.alert.as_ref().map(|s| s.0.trim().to_string());
            let record = rule.record.as_ref().map(|s| s.0.trim().to_string());
            let expr = rule.expr.as_ref().map(|s| s.0.clone()).unwrap_or_default();
            let what = match (&alert, &record) {
                (Some(a), None) if !a.is_empty() => format!("alert {a}"),
                (None, Some(r)) if !r.is_empty() => format!("record {r}"),
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{at}: a rule has either `alert` or `record`, not both"
                    ))
                }
                _ => {
                    return Err(format!(
                        "{at}: the rule has neither an `alert` nor a `record` name"
                    ))
                }
            };
            if expr.trim().is_empty() {
                return Err(format!("{at} ({what}): `expr` is missing or empty"));
            }
            let ast = promql_parser::parser::parse(&expr)
                .map_err(|e| format!("{at} ({what}): expr: {e}"))?;
            let hold = match &rule.hold {
                Some(s) if !s.0.trim().is_empty() => {
                    Some(parse_duration(&s.0).map_err(|e| format!("{at} ({what}): for: {e}"))?)
                }
                _ => None,
            };
            if let Some(s) = &rule.keep_firing_for {
                if !s.0.trim().is_empty() {
                    parse_duration(&s.0)
                        .map_err(|e| format!("{at} ({what}): keep_firing_for: {e}"))?;
                }
            }
            let labels: BTreeMap<String, String> = rule
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            if let Some(r) = record {
                if hold.is_some() {
                    return Err(format!("{at} ({what}): a recording rule has no `for`"));
                }
                record_count += 1;
                records.insert(r, ast);
                continue;
            }
            alerts += 1;
            let aname = alert.unwrap_or_default();
            let (direction, by_label) = match direction_of(&aname, &labels) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(why) => {
                    notes.push(Warning {
                        file: name.to_string(),
                        rule: Some((gname.clone(), aname.clone())),
                        message: why,
                    });
                    continue;
                }
            };
            pending.push(PendingRule {
                rule: ScaleRule {
                    group: gname.clone(),
                    name: aname,
                    direction,
                    by_label,
                    expr,
                    hold,
                    threshold: None,
                    has_window: false,
                    metrics: BTreeSet::new(),
                },
                ast,
            });
        }
    }

    let scale_rules = pending
        .into_iter()
        .map(|PendingRule { mut rule, ast }| {
            rule.threshold = threshold_of(&ast, rule.direction);
            rule.has_window = has_window(&ast, &records, 0);
            rule.metrics = expanded_metrics(&ast, &records, 0);
            rule
        })
        .collect();
    Ok(RuleFile {
        name: name.to_string(),
        groups: groups.len(),
        alerts,
        records: record_count,
        scale_rules,
        notes,
    })
}

fn threshold_of(expr: &Expr, direction: Direction) -> Option<Threshold> {
    let mut cmps = Vec::new();
    comparisons(expr, &mut cmps);
    let wanted = |op: CmpOp| match direction {
        Direction::Up => op.is_greater(),
        Direction::Down => op.is_less(),
    };
    let opposite = |op: CmpOp| match direction {
        Direction::Up => op.is_less(),
        Direction::Down => op.is_greater(),
    };
    let (op, value, inverted) = cmps
        .iter()
        .find(|(op, v)| wanted(*op) && v.is_finite())
        .map(|&(op, v)| (op, v, false))
        .or_else(|| {
            cmps.iter()
                .find(|(op, v)| opposite(*op) && v.is_finite())
                .map(|&(op, v)| (op, v, true))
        })?;
    let points = if (0.0..=1.0).contains(&value) {
        value * 100.0
    } else {
        value
    };
    Some(Threshold {
        op,
        value,
        points,
        inverted,
    })
}

const MAX_RECORD_DEPTH: usize = 8;

fn has_window(expr: &Expr, records: &BTreeMap<String, Expr>, depth: usize) -> bool {
    if averages_directly(expr) {
        return true;
    }
    depth < MAX_RECORD_DEPTH
        && names_in(expr)
            .iter()
            .filter_map(|m| records.get(m))
            .any(|r| has_window(r, records, depth + 1))
}

fn names_in(expr: &Expr) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    metric_names(expr, &mut names);
    names
}

fn expanded_metrics(
    expr: &Expr,
    records: &BTreeMap<String, Expr>,
    depth: usize,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in names_in(expr) {
        match records.get(&m) {
            Some(r) if depth < MAX_RECORD_DEPTH => {
                out.extend(expanded_metrics(r, records, depth + 1))
            }
            _ => {
                out.insert(m);
            }
        }
    }
    out
}

// ---- the checks ---------------------------------------------------------------------------------

fn fmt_points(p: f64) -> String {
    let rounded = (p * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}%")
    } else {
        format!("{rounded}%")
    }
}

fn describe(t: &Threshold) -> String {
    let load = t
        .load_points()
        .map(fmt_points)
        .unwrap_or_else(|| "?".into());
    if t.inverted {
        format!(
            "{load} (from `{} {}`, read as an inverted metric)",
            t.op.as_str(),
            t.value
        )
    } else {
        load
    }
}

/// Checks parsed files together (a scale-down rule may be paired with a scale-up rule of another
/// file). Returns the warnings, in file order.
pub fn check(files: &[RuleFile]) -> Vec<Warning> {
    let mut out = Vec::new();
    for file in files {
        out.extend(file.notes.iter().cloned());
        if file.alerts > 0 && file.scale_rules.is_empty() && file.notes.is_empty() {
            out.push(Warning {
                file: file.name.clone(),
                rule: None,
                message: format!(
                    "none of its {} alert rule{} is a scaling rule: label them `{AUTOSCALE_LABEL}: up` / \
                     `{AUTOSCALE_LABEL}: down` (or put ScaleUp / ScaleDown in their names)",
                    file.alerts,
                    if file.alerts == 1 { "" } else { "s" }
                ),
            });
        }
        for rule in &file.scale_rules {
            let warn = |message: String| Warning {
                file: file.name.clone(),
                rule: Some((rule.group.clone(), rule.name.clone())),
                message,
            };
            if rule.threshold.is_none() {
                out.push(warn(format!(
                    "cannot find its {} threshold: expected a comparison with a number at the top of \
                     `expr` (like `... {} 0.7`); the threshold check is skipped",
                    rule.direction.as_str(),
                    if rule.direction == Direction::Up { ">" } else { "<" }
                )));
            }
            if rule.direction != Direction::Down {
                continue;
            }
            match rule.hold {
                None => out.push(warn(
                    "a scale-down rule without `for`: one evaluation below the threshold removes a VM; \
                     hold it (e.g. `for: 5m`)"
                        .into(),
                )),
                Some(d) if d.is_zero() => out.push(warn(
                    "a scale-down rule with `for: 0`: one evaluation below the threshold removes a VM; \
                     hold it (e.g. `for: 5m`)"
                        .into(),
                )),
                Some(_) => {}
            }
            if !rule.has_window {
                out.push(warn(
                    "a scale-down rule without an averaging window: the expression reads instant \
                     values (no range such as `rate(x[5m])` or `avg_over_time(x[5m])`), so a brief \
                     dip removes a VM"
                        .into(),
                ));
            }
            let Some(down) = rule.threshold else { continue };
            let Some(down_load) = down.load_points() else {
                continue;
            };
            let ups = partners(files, file, rule);
            if ups.is_empty() {
                out.push(warn(
                    "no scale-up rule to compare its threshold with (in its group, its file or the \
                     other files given)"
                        .into(),
                ));
                continue;
            }
            for up_rule in ups {
                let Some(up) = up_rule.threshold else {
                    continue;
                };
                let Some(up_load) = up.load_points() else {
                    continue;
                };
                let (limit, how) = if up_load <= 100.0 {
                    (
                        up_load / 2.0 - MARGIN_POINTS,
                        format!("half the scale-up threshold minus {MARGIN_POINTS} points"),
                    )
                } else {
                    (up_load / 2.0, "half the scale-up threshold".to_string())
                };
                if down_load > limit + 1e-9 {
                    let at = if up_rule.group == rule.group {
                        up_rule.name.clone()
                    } else {
                        format!("{} (group {:?})", up_rule.name, up_rule.group)
                    };
                    out.push(warn(format!(
                        "scale-down threshold {} is above {how} ({} in {at}) = {}: a pool at {} on one \
                         VM shows {} on two and scales down again (thrashing); lower it to at most {}",
                        describe(&down),
                        describe(&up),
                        fmt_points(limit),
                        fmt_points(up_load),
                        fmt_points(up_load / 2.0),
                        fmt_points(limit.max(0.0)),
                    )));
                }
            }
        }
    }
    out
}

/// The scale-up rules a scale-down rule is compared with: its group's, else its file's, else all
/// files'; among those, the ones on the same metrics when there are some.
fn partners<'a>(files: &'a [RuleFile], file: &'a RuleFile, down: &ScaleRule) -> Vec<&'a ScaleRule> {
    let ups = |rules: &mut dyn Iterator<Item = &'a ScaleRule>| -> Vec<&'a ScaleRule> {
        rules.filter(|r| r.direction == Direction::Up).collect()
    };
    let mut candidates = ups(&mut file.scale_rules.iter().filter(|r| r.group == down.group));
    if candidates.is_empty() {
        candidates = ups(&mut file.scale_rules.iter());
    }
    if candidates.is_empty() {
        candidates = ups(&mut files.iter().flat_map(|f| f.scale_rules.iter()));
    }
    let same: Vec<&ScaleRule> = candidates
        .iter()
        .copied()
        .filter(|r| r.metrics == down.metrics)
        .collect();
    if same.is_empty() {
        candidates
    } else {
        same
    }
}

/// Reads and parses the files, then checks them together: the warnings, or the first file that
/// does not parse (named, with why).
pub fn check_files(paths: &[PathBuf]) -> Result<(Vec<RuleFile>, Vec<Warning>), Vec<String>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match read_and_parse(path) {
            Ok(f) => files.push(f),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let warnings = check(&files);
    Ok((files, warnings))
}

fn read_and_parse(path: &Path) -> Result<RuleFile, String> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{name}: error: cannot read: {e}"))?;
    parse_rule_file(&name, &text).map_err(|e| format!("{name}: error: {e}"))
}

/// `check --rules FILE...`: prints the warnings on stderr and a summary per file on stdout.
/// Returns false when a file cannot be read or parsed (warnings alone keep it true).
pub fn check_command(paths: &[PathBuf]) -> bool {
    match check_files(paths) {
        Ok((files, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            for f in &files {
                let up = f
                    .scale_rules
                    .iter()
                    .filter(|r| r.direction == Direction::Up)
                    .count();
                let down = f.scale_rules.len() - up;
                let n = warnings.iter().filter(|w| w.file == f.name).count();
                println!(
                    "{}: ok ({} alert rule{}: {up} scale-up, {down} scale-down; {n} warning{})",
                    f.name,
                    f.alerts,
                    if f.alerts == 1 { "" } else { "s" },
                    if n == 1 { "" } else { "s" },
                );
            }
            true
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ast(expr: &str) -> Expr {
        promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn file(text: &str) -> RuleFile {
        parse_rule_file("rules.yml", text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn warnings(text: &str) -> Vec<String> {
        check(&[file(text)]).iter().map(|w| w.to_string()).collect()
    }

    fn rules(up_expr: &str, down_expr: &str, down_for: &str) -> String {
        format!(
            r#"
groups:
  - name: cpu
    rules:
      - alert: AutoscalerScaleUp
        expr: '{up_expr}'
        for: 2m
        labels: {{autoscale: up}}
      - alert: AutoscalerScaleDown
        expr: '{down_expr}'
        {down_for}
        labels: {{autoscale: down}}
"#
        )
    }

    const UP: &str =
        r#"(1 - avg by (pool) (rate(node_cpu_seconds_total{mode="idle"}[2m]))) > 0.70"#;
    const DOWN: &str =
        r#"(1 - avg by (pool) (rate(node_cpu_seconds_total{mode="idle"}[5m]))) < 0.30"#;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1y2d"), Ok(Duration::from_secs(367 * 86400)));
        assert_eq!(parse_duration(" 1h0m5s "), Ok(Duration::from_secs(3605)));
        assert_eq!(parse_duration("0h0m"), Ok(Duration::ZERO));
        for bad in [
            "",
            "5",
            "m",
            "5 minutes",
            "5x",
            "-5m",
            "1.5m",
            "30m1h",
            "0x",
            "1M",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("90")
            .unwrap_err()
            .contains("the unit is missing"));
    }

    #[test]
    fn thresholds_from_comparisons() {
        let t = |expr: &str, d: Direction| threshold_of(&ast(expr), d);
        let up = t(UP, Direction::Up).unwrap();
        assert_eq!(
            (up.op, up.value, up.points, up.inverted),
            (CmpOp::Gt, 0.7, 70.0, false)
        );
        let down = t(DOWN, Direction::Down).unwrap();
        assert_eq!((down.op, down.points), (CmpOp::Lt, 30.0));
        // Percentages, >=, bool, the number on the left, parentheses around it all.
        assert_eq!(t("cpu_percent >= 70", Direction::Up).unwrap().points, 70.0);
        assert_eq!(t("cpu > bool 0.8", Direction::Up).unwrap().points, 80.0);
        let flipped = t("0.3 > avg(x)", Direction::Down).unwrap();
        assert_eq!((flipped.op, flipped.points), (CmpOp::Lt, 30.0));
        assert_eq!(
            t("((avg(x) < (25)))", Direction::Down).unwrap().points,
            25.0
        );
        // A guard joined with `and` is not the threshold: the comparison in the right direction is.
        let guarded = t(
            "avg by (pool) (x) < 0.3 and on (pool) count by (pool) (up) > 1",
            Direction::Down,
        )
        .unwrap();
        assert_eq!(guarded.points, 30.0);
        // Comparisons inside calls and label matchers do not count.
        assert_eq!(t(r#"sum(x{a!="b"} > 5)"#, Direction::Up), None);
        assert_eq!(t("x > y", Direction::Up), None);
        // An inverted metric: scale up while idle is below 25%.
        let inv = t("avg(rate(idle[2m])) < 0.25", Direction::Up).unwrap();
        assert!(inv.inverted);
        assert_eq!(inv.load_points(), Some(75.0));
        // Scientific and hexadecimal literals.
        assert_eq!(t("x > 7e-1", Direction::Up).unwrap().points, 70.0);
        assert_eq!(t("x > 0x46", Direction::Up).unwrap().points, 70.0);
    }

    #[test]
    fn windows() {
        let w = |expr: &str| averages_directly(&ast(expr));
        assert!(w("rate(x[5m])"));
        assert!(w("1 - avg by (pool) (rate(x{mode=\"idle\"}[5m])) < 0.3"));
        assert!(w("avg_over_time(x[5m]) < 0.3"));
        assert!(w("avg_over_time((1 - x)[5m:30s]) < 0.3"));
        assert!(w("avg_over_time(x[5m] offset 1m) < 0.3"));
        assert!(!w("x < 0.3"));
        assert!(!w("avg by (pool) (x) < 0.3"));
        assert!(!w("irate(x[5m]) < 0.3"));
        assert!(!w("last_over_time(x[5m]) < 0.3"));
        assert!(!w("x offset 5m < 0.3"));
    }

    #[test]
    fn metric_names_skip_functions_labels_and_keywords() {
        let m = names_in(&ast(
            r#"1 - avg by (pool) (rate(node_cpu_seconds_total{mode="idle", pool!=""}[5m]))
                   and on (pool) count by (pool) (up offset 1m) > bool 1"#,
        ));
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            ["node_cpu_seconds_total", "up"]
        );
    }

    #[test]
    fn thresholds_through_the_ast() {
        use CmpOp::{Gt, Le, Lt};
        use Direction::{Down, Up};
        // (expr, direction, (op, points, inverted) of the threshold found)
        type Found = Option<(CmpOp, f64, bool)>;
        let table: &[(&str, Direction, Found)] = &[
            (
                "x > 0.7 and on (pool) count by (pool) (up) > 1",
                Up,
                Some((Gt, 70.0, false)),
            ),
            (
                "count by (pool) (up) > 1 and on (pool) x < 0.3",
                Down,
                Some((Lt, 30.0, false)),
            ),
            (
                "x < 0.3 unless on (pool) y > 0.9",
                Down,
                Some((Lt, 30.0, false)),
            ),
            ("(x > 0.9) or (y > 0.8)", Up, Some((Gt, 90.0, false))),
            ("x > 0.7 and ignoring (mode) y", Up, Some((Gt, 70.0, false))),
            ("((((x)) > ((0.7))))", Up, Some((Gt, 70.0, false))),
            ("x offset 5m > 0.7", Up, Some((Gt, 70.0, false))),
            ("x @ 1609746000 > 0.7", Up, Some((Gt, 70.0, false))),
            ("0.7 < x @ 1609746000", Up, Some((Gt, 70.0, false))),
            (
                "avg_over_time(x[5m] @ end()) <= 30",
                Down,
                Some((Le, 30.0, false)),
            ),
            ("x > 0.2 < 0.9", Up, Some((Gt, 20.0, false))),
            ("x > 0.2 < 0.9", Down, Some((Lt, 90.0, false))),
            (
                "x > 0.7 # the comment is not an operand",
                Up,
                Some((Gt, 70.0, false)),
            ),
            ("x > +0.7", Up, Some((Gt, 70.0, false))),
            // Inverted: a scale-down on idle above 70% is a load below 30%.
            ("avg(rate(idle[5m])) > 0.7", Down, Some((Gt, 70.0, true))),
            // Not thresholds: inside calls, arithmetic, vector matching, non-finite, equality.
            ("sum(x > 0.7)", Up, None),
            ("(x > 0.7) * 2", Up, None),
            ("x * on (pool) (y > 0.7)", Up, None),
            ("x > on (pool) group_left y", Up, None),
            ("x > Inf", Up, None),
            ("x == 1", Up, None),
            ("x != 1", Down, None),
        ];
        for &(expr, direction, want) in table {
            let got = threshold_of(&ast(expr), direction).map(|t| (t.op, t.points, t.inverted));
            assert_eq!(got, want, "{expr} ({direction:?})");
        }
    }

    #[test]
    fn windows_through_the_ast() {
        let table = [
            ("rate(x[5m] @ 1609746000)", true),
            ("avg_over_time(x[5m] offset -1m)", true),
            ("quantile_over_time(0.5, x[5m])", true),
            ("histogram_quantile(0.9, sum by (le) (rate(b[5m])))", true),
            ("max_over_time(irate(x[1m])[10m:1m])", true),
            ("last_over_time(rate(x[5m])[1m:])", true),
            ("sum_over_time(((x))[5m:1m])", true),
            ("x < 0.3 and on () (rate(y[5m]) > 0)", true),
            ("topk(1, increase(x[1h]))", true),
            ("first_over_time(x[5m])", false),
            ("absent_over_time(x[5m]) or changes(x[5m]) > 0", false),
            ("ts_of_max_over_time(x[5m])", false),
            (r#"label_replace(x, "a", "$1", "b", "(.*)")"#, false),
            ("x @ start() < 0.3", false),
        ];
        for (expr, want) in table {
            assert_eq!(averages_directly(&ast(expr)), want, "{expr}");
        }
    }

    #[test]
    fn metric_names_through_the_ast() {
        let table: &[(&str, &[&str])] = &[
            (r#"{__name__="up", job="a"} == 0"#, &["up"]),
            (r#"{__name__=~"up|down"}"#, &[]),
            (
                r#"label_replace(rate(x[5m]), "dst", "$1", "src", "(.*)")"#,
                &["x"],
            ),
            ("topk(scalar(k), y)", &["k", "y"]),
            (r#"count_values("v", z)"#, &["z"]),
            ("x @ start() and y offset -5m", &["x", "y"]),
            ("sum without (on, bool, offset) (m)", &["m"]),
            (
                "avg_over_time(pool:busy:avg1m[5m:1m])",
                &["pool:busy:avg1m"],
            ),
            ("vector(1) > bool time()", &[]),
        ];
        for &(expr, want) in table {
            assert_eq!(
                names_in(&ast(expr)).into_iter().collect::<Vec<_>>(),
                want,
                "{expr}"
            );
        }
    }

    #[test]
    fn guards_and_matching_do_not_hide_a_thrash_prone_threshold() {
        for down in [
            r#"avg by (pool) (rate(x[5m])) < 0.45 and on (pool) count by (pool) (up) > 1"#,
            r#"count by (pool) (up) > 1 and on (pool) avg by (pool) (rate(x[5m])) < 0.45"#,
            r#"(avg by (pool) (rate(x[5m])) < 0.45) unless on (pool) (y > 0)"#,
        ] {
            let w = warnings(&rules(UP, down, "for: 5m"));
            assert!(
                w.len() == 1 && w[0].contains("scale-down threshold 45%"),
                "{down}: {w:?}"
            );
        }
    }

    #[test]
    fn the_shipped_convention_is_quiet() {
        assert_eq!(warnings(&rules(UP, DOWN, "for: 5m")), Vec::<String>::new());
        // Exactly at the limit (70 -> 30) is fine; so is a percentage scale.
        let pct = rules(
            "100 * (1 - avg(rate(idle[2m]))) > 70",
            "100 * (1 - avg(rate(idle[5m]))) < 30",
            "for: 5m",
        );
        assert_eq!(warnings(&pct), Vec::<String>::new());
    }

    #[test]
    fn a_thrash_prone_threshold_warns_and_says_why() {
        let w = warnings(&rules(UP, &DOWN.replace("0.30", "0.40"), "for: 5m"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("rules.yml: alert AutoscalerScaleDown (group \"cpu\")"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("scale-down threshold 40%"), "{}", w[0]);
        assert!(
            w[0].contains("(70% in AutoscalerScaleUp) = 30%"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("shows 35% on two"), "{}", w[0]);
        // 80% up allows 35% down, not 36%.
        let up80 = UP.replace("0.70", "0.8");
        assert!(warnings(&rules(&up80, &DOWN.replace("0.30", "0.35"), "for: 5m")).is_empty());
        assert_eq!(
            warnings(&rules(&up80, &DOWN.replace("0.30", "0.36"), "for: 5m")).len(),
            1
        );
    }

    #[test]
    fn scale_down_needs_for_and_a_window() {
        let w = warnings(&rules(UP, DOWN, ""));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("without `for`"), "{}", w[0]);
        let w = warnings(&rules(UP, DOWN, "for: 0s"));
        assert!(w.len() == 1 && w[0].contains("for: 0"), "{w:?}");
        let w = warnings(&rules(
            UP,
            "1 - avg by (pool) (node_cpu_busy_ratio) < 0.3",
            "for: 5m",
        ));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("without an averaging window"), "{}", w[0]);
        let w = warnings(&rules(UP, "avg(irate(x[5m])) < 0.3", "for: 5m"));
        assert!(w.len() == 1 && w[0].contains("averaging window"), "{w:?}");
        // All three at once.
        let w = warnings(&rules(UP, "avg(x) < 0.5", ""));
        assert_eq!(w.len(), 3, "{w:?}");
        // Scale-up rules are not held to these (a spike is what `for` on them is about).
        let w = warnings(&rules("avg(x) > 0.7", DOWN, "for: 5m"));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_window_in_a_recording_rule_counts() {
        let text = r#"
groups:
  - name: records
    rules:
      - record: pool:cpu_busy:avg5m
        expr: 1 - avg by (pool) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
  - name: alerts
    rules:
      - alert: ScaleUpCalculate
        expr: pool:cpu_busy:avg5m > 0.7
        for: 1m
      - alert: ScaleDownCalculate
        expr: pool:cpu_busy:avg5m < 0.3
        for: 5m
"#;
        let f = file(text);
        assert_eq!((f.groups, f.alerts, f.records), (2, 2, 1));
        assert_eq!(f.scale_rules.len(), 2);
        assert!(f.scale_rules.iter().all(|r| !r.by_label && r.has_window));
        assert_eq!(
            f.scale_rules[1].metrics.iter().collect::<Vec<_>>(),
            ["node_cpu_seconds_total"]
        );
        assert!(check(&[f]).is_empty());
    }

    #[test]
    fn rules_are_recognized_by_label_then_by_name() {
        let text = r#"
groups:
  - name: g
    rules:
      - alert: HighCpu
        expr: avg(rate(x[2m])) > 0.7
        labels: {autoscale: UP}
      - alert: web_scale_down
        expr: avg(rate(x[5m])) < 0.3
        for: 5m
      - alert: Scale-Up-Memory
        expr: avg(m) > 0.8
      - alert: DiskFull
        expr: disk > 0.9
      - alert: Weird
        expr: x > 1
        labels: {autoscale: sideways}
"#;
        let f = file(text);
        let got: Vec<(&str, Direction, bool)> = f
            .scale_rules
            .iter()
            .map(|r| (r.name.as_str(), r.direction, r.by_label))
            .collect();
        assert_eq!(
            got,
            [
                ("HighCpu", Direction::Up, true),
                ("web_scale_down", Direction::Down, false),
                ("Scale-Up-Memory", Direction::Up, false),
            ]
        );
        let w: Vec<String> = check(&[f]).iter().map(|w| w.to_string()).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("alert Weird") && w[0].contains("sideways"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn scale_down_is_compared_with_the_scale_up_rule_on_the_same_metrics() {
        // CPU 70/30 and memory 80/35 in one group: no false warning from pairing CPU with memory.
        let text = r#"
groups:
  - name: g
    rules:
      - alert: CpuScaleUp
        expr: 1 - avg(rate(cpu_idle[2m])) > 0.7
        for: 2m
      - alert: MemScaleUp
        expr: 1 - avg(avg_over_time(mem_avail[2m]) / avg_over_time(mem_total[2m])) > 0.8
        for: 2m
      - alert: CpuScaleDown
        expr: 1 - avg(rate(cpu_idle[5m])) < 0.3
        for: 5m
      - alert: MemScaleDown
        expr: 1 - avg(avg_over_time(mem_avail[5m]) / avg_over_time(mem_total[5m])) < 0.35
        for: 5m
"#;
        assert_eq!(warnings(text), Vec::<String>::new());
    }

    #[test]
    fn rules_across_files_are_paired_when_a_file_has_no_scale_up_rule() {
        let up = file(&format!(
            "groups:\n- name: up\n  rules:\n  - alert: ScaleUp\n    expr: '{UP}'\n    for: 2m\n"
        ));
        let down = parse_rule_file(
            "down.yml",
            &format!(
                "groups:\n- name: down\n  rules:\n  - alert: ScaleDown\n    expr: '{}'\n    for: 5m\n",
                DOWN.replace("0.30", "0.5")
            ),
        )
        .unwrap();
        let w = check(&[up, down]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].file, "down.yml");
        assert!(w[0].message.contains("ScaleUp (group \"up\")"), "{}", w[0]);
        // Alone, the scale-down file says it has nothing to compare with.
        let alone = parse_rule_file(
            "down.yml",
            &format!("groups:\n- name: down\n  rules:\n  - alert: ScaleDown\n    expr: '{DOWN}'\n    for: 5m\n"),
        )
        .unwrap();
        let w = check(&[alone]);
        assert!(
            w.len() == 1 && w[0].message.contains("no scale-up rule"),
            "{w:?}"
        );
    }

    #[test]
    fn unreadable_thresholds_and_foreign_files_are_warnings() {
        let w = warnings(&rules(UP, "avg(rate(x[5m])) < bool on() y", "for: 5m"));
        assert!(
            w.len() == 1 && w[0].contains("cannot find its scale-down threshold"),
            "{w:?}"
        );
        let w =
            warnings("groups:\n- name: g\n  rules:\n  - alert: DiskFull\n    expr: disk > 0.9\n");
        assert!(
            w.len() == 1 && w[0].contains("none of its 1 alert rule is a scaling rule"),
            "{w:?}"
        );
        // Empty files and files with only recording rules are quiet.
        assert!(warnings("").is_empty());
        assert!(warnings("# nothing yet\n").is_empty());
        assert!(warnings("groups: []\n").is_empty());
        assert!(
            warnings("groups:\n- name: r\n  rules:\n  - record: a:b\n    expr: sum(x)\n")
                .is_empty()
        );
    }

    #[test]
    fn files_that_do_not_parse_are_errors_that_say_why() {
        for (text, says) in [
            ("groups: [", "not a Prometheus rule file"),
            ("- just\n- a list\n", "not a Prometheus rule file"),
            ("rule_files: [a.yml]\n", "unknown field `rule_files`"),
            ("groups:\n- rules: []\n", "the group has no name"),
            ("groups:\n- name: a\n- name: a\n", "defined twice"),
            (
                "groups:\n- name: a\n  rules:\n  - expr: x\n",
                "neither an `alert` nor a `record`",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    record: b\n    expr: x\n",
                "not both",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n",
                "`expr` is missing",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    exp: x > 1\n",
                "unknown field `exp`",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: sum(x > 1\n",
                "(alert A): expr: unclosed left parenthesis",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: x{a=\"b} > 1\n",
                "expr: unterminated quoted string",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: rate(x) > 1\n",
                "expr: expected type matrix in call to function 'rate', got vector",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: foo(x) > 1\n",
                "expr: unknown function with name 'foo'",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - record: a\n    expr: x[5m] > 1\n",
                "(record a): expr: binary expression must contain only scalar",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: x >\n",
                "(alert A): expr: invalid promql query",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: x > 1\n    for: soon\n",
                "for: \"soon\" is not a duration",
            ),
            (
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: x > 1\n    labels: [a]\n",
                "invalid type",
            ),
        ] {
            let e = parse_rule_file("bad.yml", text).expect_err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn check_files_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yml");
        std::fs::write(&good, rules(UP, DOWN, "for: 5m")).unwrap();
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "groups: {").unwrap();
        let missing = dir.path().join("missing.yml");
        let errors = check_files(&[good.clone(), bad.clone(), missing.clone()]).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "{}: error: not a Prometheus rule file",
                bad.display()
            )),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with(&format!("{}: error: cannot read", missing.display())),
            "{}",
            errors[1]
        );
        let (files, warnings) = check_files(&[good]).unwrap();
        assert_eq!(files.len(), 1);
        assert!(warnings.is_empty());
        assert!(check_command(&[dir.path().join("good.yml")]));
        assert!(!check_command(&[bad]));
    }
}
