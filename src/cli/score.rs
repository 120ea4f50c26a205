//! `gguf-prune score`: per-block scores as a table with bars, JSON, or an SVG plot.

use super::select::SelectArgs;
use anyhow::Context;
use gguf_prune::forward::{BlockObserver, Forward};
use gguf_prune::gguf::Model;
use gguf_prune::output;
use gguf_prune::score::{select_layers, ExpertSaliency, ExpertScores, Selection};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// The GGUF file.
    pub model: PathBuf,
    /// Print one JSON object (a `layers` array with `index`, `bi`, `angular` per block).
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG plot of the scores per block.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Replace the plot file if it exists.
    #[arg(long, requires = "plot")]
    pub force: bool,
    /// Also score every expert of a mixture-of-experts model in the same pass: REAP saliency
    /// (mean router weight x expert output norm over the tokens routed to it) and routing
    /// frequency, per block (JSON: an `experts` object).
    #[arg(long)]
    pub experts: bool,
    #[command(flatten)]
    pub select: SelectArgs,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    args.select.apply_threads()?;
    let model = Model::open(&args.model)?;
    args.select.check(&model)?;
    let rule = super::output_rule(args.force, &[&model], &[args.select.calib.as_ref()]);
    if let Some(path) = &args.plot {
        output::check(path, &rule)?;
    }
    let options = args.select.options(args.select.remove.unwrap_or(0));
    let mut saliency = match args.experts {
        true => Some(ExpertSaliency::new(&Forward::new(&model)?).context("--experts")?),
        false => None,
    };
    let observer = saliency.as_mut().map(|s| s as &mut dyn BlockObserver);
    let bar = super::progress::StageProgress::new(true);
    let sel = select_layers(&model, &options, observer, &mut |stage, done, total| {
        bar.update(stage, done, total)
    })
    .map_err(super::name_flags)
    .with_context(|| format!("scoring {}", args.model.display()))?;
    bar.finish();
    let order = suggested_order(&sel, options.allow_ends);
    if let Some(path) = &args.plot {
        write_plot(path, &svg(&sel), &rule)?;
    }
    if args.json {
        let layers: Vec<serde_json::Value> = (0..sel.scores.bi.len())
            .map(|i| {
                serde_json::json!({
                    "index": i,
                    "bi": finite(sel.scores.bi[i]),
                    "angular": finite(sel.scores.angular[0][i]),
                    "removed": sel.removed.contains(&i),
                })
            })
            .collect();
        let mut out = serde_json::json!({
            "model": args.model.display().to_string(),
            "architecture": model.metadata().architecture()?,
            "tokens": sel.n_tokens,
            "ctx": options.ctx,
            "layers": layers,
            "order": order,
            "selection": if options.remove > 0 { serde_json::to_value(&sel)? } else { serde_json::Value::Null },
        });
        if let Some(s) = &saliency {
            out["experts"] = serde_json::to_value(s.scores())?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print!("{}", table(&sel, &order));
    if let Some(s) = &saliency {
        print!("{}", expert_table(&s.scores()));
    }
    Ok(())
}

/// Per block, each expert's REAP saliency and routing frequency, experts in index order.
fn expert_table(scores: &ExpertScores) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nExpert saliency per block (REAP: mean router weight x output norm over the tokens routed to the expert; freq: share of the block's tokens)");
    let _ = write!(s, "{:>5} {:>6}", "block", "");
    for e in 0..scores.n_expert {
        let _ = write!(s, " {e:>7}");
    }
    let _ = writeln!(s);
    for b in &scores.blocks {
        for (what, values) in [("reap", &b.reap), ("freq", &b.frequency)] {
            let label = if what == "reap" {
                b.index.to_string()
            } else {
                String::new()
            };
            let _ = write!(s, "{label:>5} {what:>6}");
            for v in values {
                let _ = write!(s, " {v:>7.4}");
            }
            let _ = writeln!(s);
        }
    }
    s
}

/// Writes the plot through a temporary file beside `path` (the rule of every output).
fn write_plot(path: &Path, svg: &str, rule: &output::OutputRule) -> anyhow::Result<()> {
    let pending = output::Pending::create(path, rule)?;
    pending
        .file(0)
        .write_all(svg.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    pending.commit()?;
    Ok(())
}

fn finite(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// Blocks by increasing BI (the first and last at the end unless allowed): the one-shot order.
fn suggested_order(sel: &Selection, allow_ends: bool) -> Vec<usize> {
    let n = sel.scores.bi.len();
    let mut order: Vec<usize> = (0..n).collect();
    let end = |i: usize| !allow_ends && (i == 0 || i + 1 == n);
    order.sort_by(|&a, &b| {
        end(a)
            .cmp(&end(b))
            .then(sel.scores.bi[a].total_cmp(&sel.scores.bi[b]))
    });
    order
}

fn table(sel: &Selection, order: &[usize]) -> String {
    let bi = &sel.scores.bi;
    let max = bi
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-12);
    let mut s = String::new();
    let _ = writeln!(s, "Block Influence on {} tokens (1 - mean cos between a block's input and output; low = redundant)", sel.n_tokens);
    let _ = writeln!(s, "{:>5} {:>8} {:>8}", "block", "BI", "angular");
    for (i, &b) in bi.iter().enumerate() {
        let width = ((b / max) * 40.0).round().max(0.0) as usize;
        let mark = if sel.removed.contains(&i) {
            "  <- remove"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{i:>5} {:>8.4} {:>8.4}  {}{mark}",
            b,
            sel.scores.angular[0][i],
            "#".repeat(width)
        );
    }
    let _ = writeln!(
        s,
        "\nsuggested removal order (one-shot BI): {}",
        order
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !sel.removed.is_empty() {
        let _ = writeln!(
            s,
            "selected by {}: {} (picked in order {})",
            sel.method,
            join(&sel.removed),
            join(&sel.order)
        );
        for c in &sel.candidates {
            let p = match (c.held_out_kl, c.held_out_ppl) {
                (Some(kl), Some(p)) => format!("  KL {kl:.4}, PPL {p:.3}"),
                _ => String::new(),
            };
            let _ = writeln!(s, "  candidate {:<10} {}{p}", c.method, join(&c.removed));
        }
    }
    s
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A small hand-written SVG: BI bars per block, angular distance (n = 1) as a line.
fn svg(sel: &Selection) -> String {
    let bi = &sel.scores.bi;
    let ang = &sel.scores.angular[0];
    let n = bi.len().max(1);
    let (w, h, pad) = (40.0 + 24.0 * n as f64, 260.0, 30.0);
    let max = bi
        .iter()
        .chain(ang.iter())
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-12);
    let y = |v: f64| h - pad - (v / max) * (h - 2.0 * pad);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"10\">\n");
    let _ = writeln!(s, "<text x=\"{pad}\" y=\"16\">Block Influence (bars) and angular distance (line) per block</text>");
    let mut points = Vec::new();
    for i in 0..n {
        let x = pad + 24.0 * i as f64;
        let v = if bi[i].is_finite() { bi[i] } else { 0.0 };
        let fill = if sel.removed.contains(&i) {
            "#d62728"
        } else {
            "#1f77b4"
        };
        let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"18\" height=\"{:.1}\" fill=\"{fill}\"><title>block {i}: BI {v:.4}</title></rect>", y(v), (h - pad) - y(v));
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{i}</text>",
            x + 9.0,
            h - pad + 12.0
        );
        if ang[i].is_finite() {
            points.push(format!("{:.1},{:.1}", x + 9.0, y(ang[i])));
        }
    }
    let _ = writeln!(
        s,
        "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"1.5\" points=\"{}\"/>",
        points.join(" ")
    );
    s.push_str("</svg>\n");
    s
}
