//! Replays every case in `corpus/`: each is a seed the simulator once failed on, and each must
//! pass now.

use std::fs;
use std::path::PathBuf;

use ballast_sim::{run_seed, Canary, RunOptions, Target};

struct Case {
    file: PathBuf,
    target: Target,
    seed: u64,
    options: RunOptions,
}

fn parse(file: PathBuf) -> Case {
    let text = fs::read_to_string(&file).unwrap();
    let mut target = None;
    let mut seed = None;
    let mut options = RunOptions::default();
    for line in text.lines().filter(|line| !line.trim().is_empty() && !line.starts_with('#')) {
        let (key, value) =
            line.split_once(':').unwrap_or_else(|| panic!("{}: `{line}` is not `key: value`", file.display()));
        let value = value.trim();
        match key.trim() {
            "target" => target = Target::parse(value).and_then(|targets| targets.first().copied()),
            "seed" => seed = Some(value.parse().expect("seed is a number")),
            "ops" => options.ops = Some(value.parse().expect("ops is a number")),
            "canary" => {
                assert_eq!(value, "lying-fsync");
                options.canary = Some(Canary::LyingFsync);
            }
            "invariant" | "bug" | "found" | "fixed" => {}
            other => panic!("{}: unknown key {other}", file.display()),
        }
    }
    let target = target.unwrap_or_else(|| panic!("{}: no target", file.display()));
    let seed = seed.unwrap_or_else(|| panic!("{}: no seed", file.display()));
    Case { file, target, seed, options }
}

#[test]
fn every_corpus_case_passes() {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut files: Vec<PathBuf> = fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus holds the cases the simulator found");
    for file in files {
        let case = parse(file);
        let outcome = run_seed(case.target, case.seed, &case.options);
        assert_eq!(outcome.failure, None, "{} fails again", case.file.display());
    }
}
