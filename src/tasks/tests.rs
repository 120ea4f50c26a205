use super::*;

/// A model whose row after token `t` puts logit 4 on token `(t + 1) % n` and 0 elsewhere.
struct Successor(usize);

impl LogitsSource for Successor {
    fn n_vocab(&self) -> usize {
        self.0
    }

    fn logits(
        &mut self,
        windows: &[Vec<u32>],
        first: usize,
        f: &mut dyn FnMut(usize, usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        for (w, win) in windows.iter().enumerate() {
            for (p, &t) in win.iter().enumerate().skip(first) {
                let mut row = vec![0f32; self.0];
                row[(t as usize + 1) % self.0] = 4.0;
                f(w, p, &row)?;
            }
        }
        Ok(())
    }
}

fn task(seqs: Vec<Vec<u32>>, gold: usize) -> Task {
    let (requests, spans) = prefix_requests(&seqs, 0).unwrap();
    Task {
        index: 0,
        correct: (0..seqs.len()).map(|k| k == gold).collect(),
        seqs,
        requests,
        spans,
    }
}

#[test]
fn log_prob_variants_agree_with_the_closed_form() {
    let row = [4.0f32, 0.0, 0.0, 0.0];
    let want = 4.0 - (4f64.exp() + 3.0).ln();
    for kind in [LogProbKind::Direct, LogProbKind::Softmax] {
        assert!((log_prob(&row, 0, kind) as f64 - want).abs() < 1e-6);
    }
}

#[test]
fn the_choice_that_follows_the_model_wins() {
    // Shared prefix [1, 2]; choice 1 continues 3, 4 (what the model predicts), the others not.
    let seqs = vec![
        vec![1, 2, 5, 5],
        vec![1, 2, 3, 4],
        vec![1, 2, 7, 1],
        vec![1, 2, 0, 6],
    ];
    for kind in [Kind::HellaSwag, Kind::MultipleChoice] {
        let set = TaskSet {
            kind,
            tasks: vec![task(seqs.clone(), 1), task(seqs.clone(), 2)],
            in_file: 2,
        };
        let acc = score(
            &mut Successor(8),
            &set,
            &ScoreOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(acc.tasks, 2);
        assert_eq!(acc.correct, 1);
        assert!(acc.choices.iter().all(|c| c.choice == 1));
        assert_eq!(acc.accuracy, 0.5);
        assert!((acc.accuracy_err - 0.5).abs() < 1e-12);
        assert_eq!(acc.random_chance, 0.25);
    }
}

#[test]
fn prefix_scoring_refuses_unscorable_tasks() {
    assert!(prefix_requests(&[vec![1, 2], vec![3, 4]], 0).is_err());
    assert!(prefix_requests(&[vec![1, 2], vec![1, 2, 3]], 0).is_err());
}

#[test]
fn lines_like_getline_after_dash_f() {
    assert_eq!(prompt_lines("a\nb\n"), vec!["a", "b"]);
    assert_eq!(prompt_lines("a\nb\n\n"), vec!["a", "b"]);
    assert_eq!(prompt_lines("a\n\nb"), vec!["a", "", "b"]);
    assert!(prompt_lines("").is_empty());
}
