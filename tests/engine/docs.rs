//! The repository's documents point at things that exist.
//!
//! Regression (issue 11): the README, ARCHITECTURE.md and `sim/src/faults.rs` cited a
//! FAULTS.md the repository did not hold, and code cited "DESIGN invariant 7" when no
//! document in the repository numbered its invariants.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` and `.md` file under `directory`, but build output.
fn sources(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            sources(&path, found);
        } else if name.ends_with(".rs") || name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The numbers of the invariants ARCHITECTURE.md lists ("1. **...").
fn numbered_invariants() -> Vec<u32> {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = architecture.split("## Invariants").nth(1).expect("ARCHITECTURE.md has an Invariants section");
    section.lines().filter_map(|line| line.split_once(". **")?.0.trim().parse().ok()).collect()
}

#[test]
fn every_invariant_the_code_cites_is_numbered_in_architecture_md() {
    let numbers = numbered_invariants();
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>(), "numbered 1, 2, 3, ... without gaps");
    let mut files = Vec::new();
    sources(&root(), &mut files);
    let mut cited = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lower = text.to_lowercase();
        for (at, _) in lower.match_indices("invariant ") {
            let digits: String = lower[at + "invariant ".len()..].chars().take_while(char::is_ascii_digit).collect();
            if let Ok(number) = digits.parse::<u32>() {
                cited += 1;
                assert!(
                    numbers.contains(&number),
                    "{} cites invariant {number}, which ARCHITECTURE.md lacks",
                    file.display()
                );
            }
        }
    }
    assert!(cited >= 3, "the code cites invariants by number ({cited} found)");
}

#[test]
fn no_document_cites_a_faults_md_the_repository_lacks() {
    assert!(root().join("docs/faults.md").is_file());
    let mut files = Vec::new();
    sources(&root(), &mut files);
    for file in files.into_iter().filter(|file| !file.ends_with("tests/engine/docs.rs")) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("FAULTS.md"), "{} cites FAULTS.md; the fault model is docs/faults.md", file.display());
    }
}
