//! `cargo xtask bench [--quick]`: the criterion benchmarks of `benches/` in one run, then a
//! markdown table per workload and an SVG bar chart per workload.
//!
//! The benchmark binary appends what it runs to a tab-separated report file
//! (`BUDALLOC_BENCH_REPORT`): `group`/`efficiency` lines (name, unit, description), `subject`
//! lines (a subject was run in a group), `failed` lines (with the reason), `eff` lines (the
//! efficiency scores) and `na` lines (a workload that does not apply). Times come from
//! criterion's own estimates (`<CRITERION_HOME>/<group>/<subject>/new/estimates.json`, the
//! median). Both live in a directory that is emptied first, so nothing stale is reported.
//!
//! A subject that failed a workload is a row saying so, never dropped. A quick run writes its
//! report to `<target>/bench-report/`; a full run writes `docs/bench/` (the committed copy the
//! README shows).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{banner, bench_command, Cmd, Failure, Json, Result, Runner};

/// Efficiency seeds of a quick and of a full run.
const SEEDS: (&str, &str) = ("3", "10");
/// Where a full run writes its markdown and charts (relative to the workspace root).
const DOCS_DIR: &str = "docs/bench";
/// The working directory of a run, under the cargo target directory.
const WORK_DIR: &str = "bench-report";
/// The report file, in the working directory.
const REPORT_FILE: &str = "report.tsv";
/// Crates whose versions the report states (from `Cargo.lock`).
const PEER_CRATES: &[&str] = &[
    "talc",
    "rlsf",
    "buddy_system_allocator",
    "buddy-alloc",
    "linked_list_allocator",
    "mimalloc",
    "libmimalloc-sys",
];
/// Timed bars longer than this many times the best are cut (and marked) in the charts.
const CHART_CAP: f64 = 10.0;

/// `cargo xtask bench ARGS`.
pub(crate) fn run(runner: &mut Runner, args: &[String]) -> Result {
    let quick = args.iter().take_while(|arg| *arg != "--").any(|arg| arg == "--quick");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| runner.root.join("target"), PathBuf::from);
    let work = runner.root.join(target).join(WORK_DIR);
    let criterion = work.join("criterion");
    let report = work.join(REPORT_FILE);
    if criterion.exists() {
        fs::remove_dir_all(&criterion).map_err(|e| io_failure(&criterion, &e))?;
    }
    fs::create_dir_all(&work).map_err(|e| io_failure(&work, &e))?;
    if report.exists() {
        fs::remove_file(&report).map_err(|e| io_failure(&report, &e))?;
    }
    let command = bench_command(args)
        .env("CRITERION_HOME", &criterion.display().to_string())
        .env("BUDALLOC_BENCH_REPORT", &report.display().to_string())
        .env("BUDALLOC_BENCH_SEEDS", if quick { SEEDS.0 } else { SEEDS.1 });
    let command_line = format!("cargo xtask bench{}", if quick { " --quick" } else { "" });
    // Before the run: the report names the commit and the time the measurements started from,
    // even if the tree changes while they run.
    let context = Context::gather(runner, &command_line);
    let ran = runner.run_step("bench", command);
    if !report.exists() {
        return ran.and(Err(Failure(format!("the benchmarks wrote no report ({})", report.display()))));
    }
    let groups = load(&report, &criterion)?;
    let page = markdown(&groups, &context);
    banner("benchmark report");
    println!("{page}");
    let out = if quick { work } else { runner.root.join(DOCS_DIR) };
    fs::create_dir_all(&out).map_err(|e| io_failure(&out, &e))?;
    for group in &groups {
        let path = out.join(format!("{}.svg", group.name));
        fs::write(&path, chart(group, &context)).map_err(|e| io_failure(&path, &e))?;
    }
    let path = out.join("README.md");
    fs::write(&path, page).map_err(|e| io_failure(&path, &e))?;
    println!("wrote {} and {} charts in {}", path.display(), groups.len(), out.display());
    ran
}

fn io_failure(path: &Path, error: &std::io::Error) -> Failure {
    Failure(format!("{}: {error}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The data
// ---------------------------------------------------------------------------------------------

/// What a workload measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Time per operation (criterion's median), lower is better.
    Time,
    /// Share of the region (mean over seeds), higher is better.
    Efficiency,
}

/// One subject's outcome in one workload.
enum Outcome {
    /// Median nanoseconds per operation.
    Time(f64),
    /// Mean, worst and best share of the region; seeds; why the worst run stopped.
    Efficiency { mean: f64, worst: f64, best: f64, seeds: String, stop: String },
    /// The subject failed the workload.
    Failed(String),
    /// The workload does not apply to the subject.
    NotApplicable(String),
    /// The subject ran but left no estimate (a filtered or interrupted run).
    Missing,
}

struct Row {
    subject: String,
    outcome: Outcome,
}

struct Group {
    name: String,
    kind: Kind,
    unit: String,
    description: String,
    rows: Vec<Row>,
}

impl Group {
    /// The value of a row, if it has one.
    fn value(row: &Row) -> Option<f64> {
        match row.outcome {
            Outcome::Time(t) => Some(t),
            Outcome::Efficiency { mean, .. } => Some(mean),
            _ => None,
        }
    }

    /// The best value (least time, highest mean share).
    fn best(&self) -> Option<f64> {
        let values = self.rows.iter().filter_map(Group::value);
        match self.kind {
            Kind::Time => values.min_by(f64::total_cmp),
            Kind::Efficiency => values.max_by(f64::total_cmp),
        }
    }

    /// `value` relative to the best: time / best time, or mean / best mean.
    fn ratio(&self, value: f64) -> Option<f64> {
        self.best().filter(|&b| b > 0.0).map(|b| value / b)
    }

    fn row(&mut self, subject: &str) -> &mut Row {
        let i = match self.rows.iter().position(|r| r.subject == subject) {
            Some(i) => i,
            None => {
                self.rows.push(Row { subject: subject.to_string(), outcome: Outcome::Missing });
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }
}

/// Reads the report file and criterion's estimates.
fn load(report: &Path, criterion: &Path) -> Result<Vec<Group>> {
    let text = fs::read_to_string(report).map_err(|e| io_failure(report, &e))?;
    let mut groups: Vec<Group> = Vec::new();
    let mut checker = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let (tag, name, subject) = (field(0), field(1), field(2));
        if tag == "group" || tag == "efficiency" {
            let kind = if tag == "group" { Kind::Time } else { Kind::Efficiency };
            groups.retain(|g| g.name != name);
            let (unit, description) = (field(2).to_string(), field(3).to_string());
            groups.push(Group { name: name.to_string(), kind, unit, description, rows: Vec::new() });
            continue;
        }
        let Some(group) = groups.iter_mut().find(|g| g.name == name) else {
            if tag == "failed" {
                checker.push((subject.to_string(), field(3).to_string()));
            }
            continue;
        };
        let row = group.row(subject);
        match tag {
            "failed" if !matches!(row.outcome, Outcome::Failed(_)) => {
                row.outcome = Outcome::Failed(field(3).to_string());
            }
            "na" => row.outcome = Outcome::NotApplicable(field(3).to_string()),
            "eff" => {
                let number = |i: usize| field(i).parse::<f64>().unwrap_or(f64::NAN);
                row.outcome = Outcome::Efficiency {
                    mean: number(3),
                    worst: number(4),
                    best: number(5),
                    seeds: field(6).to_string(),
                    stop: field(7).to_string(),
                };
            }
            _ => {}
        }
    }
    for group in groups.iter_mut().filter(|g| g.kind == Kind::Time) {
        for row in group.rows.iter_mut().filter(|r| matches!(r.outcome, Outcome::Missing)) {
            let path = criterion.join(&group.name).join(&row.subject).join("new/estimates.json");
            if let Some(median) = median_ns(&path) {
                row.outcome = Outcome::Time(median);
            }
        }
    }
    // Groups that criterion's filter left out ran no subject.
    groups.retain(|g| !g.rows.is_empty());
    for (subject, reason) in checker {
        for group in &mut groups {
            let row = group.row(&subject);
            if matches!(row.outcome, Outcome::Missing) {
                row.outcome = Outcome::Failed(format!("checker: {reason}"));
            }
        }
    }
    Ok(groups)
}

/// The median point estimate (nanoseconds) of a criterion `estimates.json`.
fn median_ns(path: &Path) -> Option<f64> {
    let text = fs::read_to_string(path).ok()?;
    let json = Json::parse(&text).ok()?;
    match json.get("median")?.get("point_estimate")? {
        Json::Number(n) => n.parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Where and when
// ---------------------------------------------------------------------------------------------

/// The date, the machine, the toolchain, the peers' versions and the command of a run.
struct Context {
    date: String,
    machine: String,
    rustc: String,
    versions: String,
    command: String,
    /// The workspace's commit (and whether the tree had uncommitted changes).
    commit: String,
}

impl Context {
    fn gather(runner: &Runner, command: &str) -> Context {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map_or_else(|| std::env::consts::ARCH.to_string(), |m| m.trim().to_string());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        let memory = mem_kib.map_or(String::new(), |k| format!(", {:.0} GiB", k as f64 / (1 << 20) as f64));
        let machine = format!("{cpu}, {cores} logical CPUs{memory}, {}", std::env::consts::OS);
        let quiet = |program: &'static str, args: &[&str]| {
            let cmd = Cmd { program, args: args.iter().map(|a| a.to_string()).collect(), env: Vec::new() };
            runner.capture(&cmd).map(|out| out.trim().to_string()).unwrap_or_default()
        };
        let rustc = quiet("rustc", &["-V"]);
        let commit = quiet("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = !quiet("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        let commit = match (commit.is_empty(), dirty) {
            (true, _) => "an unknown commit".to_string(),
            (false, false) => format!("commit {commit}"),
            (false, true) => format!("commit {commit} with uncommitted changes"),
        };
        let lock = fs::read_to_string(runner.root.join("Cargo.lock")).unwrap_or_default();
        let versions = PEER_CRATES
            .iter()
            .filter_map(|name| locked_version(&lock, name).map(|v| format!("{name} {v}")))
            .collect::<Vec<_>>()
            .join(", ");
        Context { date: utc_now(), machine, rustc, versions, command: command.to_string(), commit }
    }
}

/// The version of `name` in a `Cargo.lock`.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    lines.by_ref().find(|l| l.trim() == wanted)?;
    let version = lines.next()?.trim().strip_prefix("version = ")?;
    Some(version.trim_matches('"').to_string())
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/// A time in nanoseconds with three significant digits and a unit.
fn format_ns(ns: f64) -> String {
    let (value, unit) = if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

fn percent(share: f64) -> String {
    format!("{:.1} %", 100.0 * share)
}

/// The whole report: context, a summary matrix, then one table per workload.
fn markdown(groups: &[Group], context: &Context) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Measured {} on {} with `{}` at {} ({}). Versions: {}.\n",
        context.date, context.machine, context.command, context.commit, context.rustc, context.versions
    );
    let _ = writeln!(
        s,
        "Region allocators get a fresh 64 MiB region (16 MiB for heap efficiency) aligned to exactly \
         4096 bytes; the system allocator and mimalloc get memory themselves. Every call is out of line. \
         Before timing, every subject passes a correctness check and every workload's live blocks are \
         checked (aligned, inside the region, disjoint); a subject that fails is shown as failed. Times \
         are criterion's medians per operation; the ratio is to the best subject of the workload \
         (1.00× = best). Heap efficiency is the share of the region that live requested bytes reach \
         at the first failed request (mean over seeds; higher is better).\n"
    );
    summary(&mut s, groups);
    for kind in [Kind::Efficiency, Kind::Time] {
        let title = if kind == Kind::Efficiency { "Heap efficiency" } else { "Time per operation" };
        let _ = writeln!(s, "## {title}\n");
        for group in groups.iter().filter(|g| g.kind == kind) {
            table(&mut s, group);
        }
    }
    s
}

/// One row per workload, one column per subject: the ratio to the best (time) or the mean share
/// (efficiency).
fn summary(s: &mut String, groups: &[Group]) {
    let mut subjects: Vec<&str> = Vec::new();
    for row in groups.iter().flat_map(|g| &g.rows) {
        if !subjects.contains(&row.subject.as_str()) {
            subjects.push(&row.subject);
        }
    }
    let _ = writeln!(s, "## Summary\n");
    let _ = writeln!(
        s,
        "Time: ratio to the fastest subject (1.00× = fastest, **bold**). Efficiency: mean share of \
         the region (best in **bold**).\n"
    );
    let _ = writeln!(s, "| workload | {} |", subjects.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(subjects.len()));
    for group in groups {
        let cells: Vec<String> = subjects
            .iter()
            .map(|subject| match group.rows.iter().find(|r| r.subject == *subject) {
                None => String::new(),
                Some(row) => match &row.outcome {
                    Outcome::Time(t) => {
                        bold_if_best(group, *t, format!("{:.2}×", group.ratio(*t).unwrap_or(1.0)))
                    }
                    Outcome::Efficiency { mean, .. } => bold_if_best(group, *mean, percent(*mean)),
                    Outcome::Failed(_) => "failed".to_string(),
                    Outcome::NotApplicable(_) => "n/a".to_string(),
                    Outcome::Missing => "no result".to_string(),
                },
            })
            .collect();
        let _ = writeln!(s, "| [{}](#{}) | {} |", group.name, group.name.to_lowercase(), cells.join(" | "));
    }
    s.push('\n');
}

fn bold_if_best(group: &Group, value: f64, text: String) -> String {
    if group.best() == Some(value) {
        format!("**{text}**")
    } else {
        text
    }
}

/// The table of one workload, with its chart.
fn table(s: &mut String, group: &Group) {
    let _ = writeln!(s, "### {}\n\n{} ({}).\n", group.name, group.description, group.unit);
    let _ = writeln!(s, "![{}]({}.svg)\n", group.name, group.name);
    match group.kind {
        Kind::Time => {
            let _ = writeln!(s, "| subject | median | ratio to best |\n|---|---:|---:|");
        }
        Kind::Efficiency => {
            let _ = writeln!(
                s,
                "| subject | mean | worst | best | ratio to best mean | seeds | worst run stopped at |\n\
                 |---|---:|---:|---:|---:|---:|---|"
            );
        }
    }
    for row in &group.rows {
        let line = match &row.outcome {
            Outcome::Time(t) => {
                format!("{} | {:.2}×", bold_if_best(group, *t, format_ns(*t)), group.ratio(*t).unwrap_or(1.0))
            }
            Outcome::Efficiency { mean, worst, best, seeds, stop } => format!(
                "{} | {} | {} | {:.2}× | {seeds} | {stop}",
                bold_if_best(group, *mean, percent(*mean)),
                percent(*worst),
                percent(*best),
                group.ratio(*mean).unwrap_or(1.0)
            ),
            Outcome::Failed(reason) => format!("FAILED: {} | –", reason.replace('|', "/")),
            Outcome::NotApplicable(reason) => format!("n/a ({reason}) | –"),
            Outcome::Missing => "no result | –".to_string(),
        };
        let _ = writeln!(s, "| {} | {line} |", row.subject);
    }
    s.push('\n');
}

// ---------------------------------------------------------------------------------------------
// SVG bar charts, written by hand (xtask takes no dependencies)
// ---------------------------------------------------------------------------------------------

/// Width of the chart, of the label column and of the bar area (pixels).
const SVG_WIDTH: f64 = 760.0;
const SVG_LABEL: f64 = 190.0;
const SVG_BARS: f64 = 400.0;
/// Height of one bar row and of the header (pixels).
const SVG_ROW: f64 = 24.0;
const SVG_HEAD: f64 = 58.0;

/// Fill colour of a subject's bar: budalloc's in orange, the others in blue.
fn bar_colour(subject: &str) -> &'static str {
    if subject.starts_with("budalloc") {
        "#e8590c"
    } else {
        "#4c6ef5"
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Characters per line of a chart's description, and of the text after a bar at most.
const SVG_LINE_CHARS: usize = 110;
const SVG_LABEL_CHARS: usize = 90;

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A horizontal bar chart of one workload: one bar per subject, its value written after it.
fn chart(group: &Group, context: &Context) -> String {
    let description = wrap(&group.description, SVG_LINE_CHARS);
    let head = SVG_HEAD + 16.0 * (description.len() as f64 - 1.0);
    let height = head + SVG_ROW * group.rows.len() as f64 + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{SVG_WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {SVG_WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    let direction = if group.kind == Kind::Time { "lower is better" } else { "higher is better" };
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{} ({}, {direction})</text>",
        xml_escape(&group.name),
        xml_escape(&group.unit)
    );
    for (i, line) in description.iter().enumerate() {
        let y = 38.0 + 16.0 * i as f64;
        let _ = writeln!(s, "<text x=\"10\" y=\"{y:.1}\" fill=\"#495057\">{}</text>", xml_escape(line));
    }
    // The scale: 0 – 100 % for efficiency; 0 – the slowest time, cut at CHART_CAP × the best.
    let best = group.best().unwrap_or(1.0);
    let max = match group.kind {
        Kind::Efficiency => 1.0,
        Kind::Time => {
            let slowest = group.rows.iter().filter_map(Group::value).fold(0.0, f64::max);
            slowest.min(best * CHART_CAP).max(f64::MIN_POSITIVE)
        }
    };
    for (i, row) in group.rows.iter().enumerate() {
        let y = head + SVG_ROW * i as f64;
        let text_y = y + SVG_ROW * 0.65;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{text_y:.1}\" text-anchor=\"end\">{}</text>",
            SVG_LABEL - 8.0,
            xml_escape(&row.subject)
        );
        let (bar, label) = match &row.outcome {
            Outcome::Time(t) => {
                let ratio = group.ratio(*t).unwrap_or(1.0);
                (Some(*t), format!("{} ({ratio:.2}×)", format_ns(*t)))
            }
            Outcome::Efficiency { mean, worst, .. } => {
                (Some(*mean), format!("{} (worst {})", percent(*mean), percent(*worst)))
            }
            Outcome::Failed(reason) => (None, format!("FAILED: {reason}")),
            Outcome::NotApplicable(reason) => (None, format!("n/a ({reason})")),
            Outcome::Missing => (None, "no result".to_string()),
        };
        let mut end = SVG_LABEL;
        if let Some(value) = bar {
            let cut = value > max;
            let w = (value.min(max) / max * SVG_BARS).max(1.0);
            let _ = writeln!(
                s,
                "<rect x=\"{SVG_LABEL}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                y + 4.0,
                SVG_ROW - 8.0,
                bar_colour(&row.subject)
            );
            if let Outcome::Efficiency { worst, .. } = row.outcome {
                let x = SVG_LABEL + worst.clamp(0.0, 1.0) * SVG_BARS;
                let _ = writeln!(
                    s,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#212529\" \
                     stroke-width=\"2\"/>",
                    y + 2.0,
                    y + SVG_ROW - 2.0
                );
            }
            if cut {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{text_y:.1}\" fill=\"#ffffff\" text-anchor=\"end\">//</text>",
                    SVG_LABEL + w - 3.0
                );
            }
            end = SVG_LABEL + w;
        }
        let colour = if matches!(row.outcome, Outcome::Failed(_)) { "#c92a2a" } else { "#212529" };
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{text_y:.1}\" fill=\"{colour}\">{}</text>",
            end + 6.0,
            xml_escape(&truncate(&label, SVG_LABEL_CHARS))
        );
    }
    let foot = format!("{} · {} · {}", context.date, context.machine, context.command);
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"{:.1}\" fill=\"#868e96\" font-size=\"10\">{}</text>",
        height - 10.0,
        xml_escape(&foot)
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rows_keep_failures_and_read_estimates() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let estimates = dir.join("criterion/g/fast/new");
        fs::create_dir_all(&estimates).unwrap();
        fs::write(estimates.join("estimates.json"), r#"{"median":{"point_estimate":12.5},"mean":{}}"#)
            .unwrap();
        let report = dir.join(REPORT_FILE);
        let lines = [
            "efficiency\te\t% of the region\tfill",
            "subject\te\ta",
            "eff\te\ta\t0.5\t0.4\t0.6\t3\talloc 8 B",
            "subject\te\tsys",
            "na\te\tsys\tnot region-based",
            "group\tg\tns/op\tpairs",
            "subject\tg\tfast",
            "subject\tg\tbroken",
            "failed\tg\tbroken\tout of memory",
            "failed\tchecker\tbad\toverlap",
        ];
        fs::write(&report, lines.join("\n")).unwrap();
        let groups = load(&report, &dir.join("criterion")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(groups.len(), 2);
        let g = &groups[1];
        assert!(matches!(g.rows[0].outcome, Outcome::Time(t) if t == 12.5));
        assert!(matches!(&g.rows[1].outcome, Outcome::Failed(r) if r == "out of memory"));
        assert!(matches!(&g.rows[2].outcome, Outcome::Failed(r) if r == "checker: overlap"));
        assert!(matches!(groups[0].rows[0].outcome, Outcome::Efficiency { mean, .. } if mean == 0.5));
        assert!(matches!(groups[0].rows[1].outcome, Outcome::NotApplicable(_)));
        let context = Context {
            date: "d".into(),
            machine: "m".into(),
            rustc: "r".into(),
            versions: "v".into(),
            command: "c".into(),
            commit: "commit x".into(),
        };
        let page = markdown(&groups, &context);
        assert!(page.contains("| broken | FAILED: out of memory | – |"));
        assert!(page.contains("| fast | **12.5 ns** | 1.00× |"));
        assert!(chart(g, &context).contains("FAILED: out of memory"));
    }

    #[test]
    fn helpers() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(format_ns(1234.0), "1.23 µs");
        assert_eq!(format_ns(12.34), "12.3 ns");
        let lock = "[[package]]\nname = \"talc\"\nversion = \"5.1.1\"\n";
        assert_eq!(locked_version(lock, "talc").as_deref(), Some("5.1.1"));
        assert_eq!(utc_now().len(), "2026-01-01 00:00 UTC".len());
    }
}
