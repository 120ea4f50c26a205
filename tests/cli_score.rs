//! `gguf-prune score` end to end on SmolLM2: JSON shape, SVG plot, table.

pub mod common;

fn score_cmd() -> std::process::Command {
    let mut cmd = common::gguf_prune();
    cmd.arg("score")
        .arg(common::smollm2())
        .arg("--calib")
        .arg(common::eval_text());
    cmd.args(["--ctx", "256", "--max-tokens", "768", "-t", "2"]);
    cmd
}

#[test]
fn score_json_and_plot() {
    let dir = common::workdir();
    let svg = dir.path().join("scores.svg");
    let out = common::run_ok(score_cmd().arg("--json").arg("--plot").arg(&svg));
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let layers = v["layers"].as_array().expect("a layers array");
    assert_eq!(layers.len(), 30);
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["index"].as_u64(), Some(i as u64));
        let bi = l["bi"].as_f64().expect("bi is a number");
        assert!(bi > 0.0 && bi < 1.5, "block {i}: BI {bi}");
        assert!(l["angular"].as_f64().is_some());
    }
    assert_eq!(v["tokens"].as_u64(), Some(768));
    let order: Vec<u64> = v["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(order.len(), 30);
    // The first and last blocks come last in the suggested order (kept by default).
    assert!(
        order[28..].contains(&0) && order[28..].contains(&29),
        "{order:?}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.matches("<rect").count() == 30);
}

#[test]
fn score_table_with_selection() {
    let out = common::run_ok(score_cmd().args(["--remove", "2", "--metric", "bi"]));
    assert!(out.contains("Block Influence"), "{out}");
    assert_eq!(out.matches("<- remove").count(), 2, "{out}");
    assert!(out.contains("selected by bi"), "{out}");
}

/// `--refine` adds a full-size KL-guided candidate next to the three metric sets. (It used to
/// stop after its first pick: the validity check saw the removed blocks twice.)
#[test]
fn refine_adds_a_complete_guided_candidate() {
    let out = common::run_ok(score_cmd().args(["--remove", "3", "--refine", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let candidates = v["selection"]["candidates"].as_array().expect("candidates");
    let methods: Vec<&str> = candidates
        .iter()
        .map(|c| c["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["bi", "angular", "iterative", "guided"], "{v}");
    let guided = &candidates[3];
    assert_eq!(guided["removed"].as_array().unwrap().len(), 3, "{guided}");
    assert!(guided["held_out_kl"].as_f64().is_some(), "{guided}");
}
