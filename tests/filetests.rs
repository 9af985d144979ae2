//! File tests: each `tests/filetests/<pass>/<name>.ir` is an IR text file whose header names the
//! passes to run, in order, with their options; the output of every pass (IR text, a report, the
//! CKKS program's text form, or the error) is compared with an insta snapshot
//! `tests/filetests/snapshots/<pass>__<name>.snap`, so a failing test says which pass changed what.
//!
//! Header lines (`//` comments, before the graph):
//! - `// test: verify, fold-affine, egraph, depth, ckks` — the passes, in order (`polyhe::opt`, the
//!   passes `polyhe opt` runs);
//! - `// options: log_n=13 security=none layout=column` — options of the `ckks` pass (whose program
//!   must validate and read back from its exact text form, `Program::print_exact` / `parse`);
//! - `// calib: x uniform -2 2 16` — calibration samples for `to-poly` (one line per input);
//! - `// expect-error: text` — the file is a negative test: some pass must fail with an error
//!   containing `text` (the error is part of the snapshot).
//!
//! Every file is run and every mismatch reported together. To add a test, write the file and run
//! `INSTA_UPDATE=always cargo test --test filetests` (or `cargo insta review`); see
//! `docs/filetests.md`.

use std::path::{Path, PathBuf};

use polyhe::opt::{run_passes, run_program_passes, set_backend_option, synthetic_samples, Pass, ProgramPass};
use polyhe_backend::BackendOptions;
use polyhe_ir::text;

/// One file's header.
struct Header {
    passes: Vec<Pass>,
    backend: BackendOptions,
    expect_error: Option<String>,
    /// `// calib: NAME uniform LO HI COUNT` lines (for `to-poly`).
    calib: Vec<String>,
}

fn header(src: &str) -> Result<Header, String> {
    let mut h =
        Header { passes: Vec::new(), backend: BackendOptions::default(), expect_error: None, calib: Vec::new() };
    for line in src.lines().map(str::trim).take_while(|l| l.starts_with("//") || l.is_empty()) {
        let body = line.trim_start_matches('/').trim();
        if let Some(p) = body.strip_prefix("test:") {
            h.passes =
                p.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
        } else if let Some(o) = body.strip_prefix("options:") {
            for kv in o.split_whitespace() {
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("option `{kv}` is not key=value"))?;
                set_backend_option(&mut h.backend, k, v)?;
            }
        } else if let Some(e) = body.strip_prefix("expect-error:") {
            h.expect_error = Some(e.trim().to_string());
        } else if let Some(c) = body.strip_prefix("calib:") {
            h.calib.push(c.trim().to_string());
        }
    }
    if h.passes.is_empty() {
        return Err("no `// test: <passes>` header".into());
    }
    Ok(h)
}

/// The snapshot text of one file, or a message when the file itself is malformed or an
/// expected error did not occur. `.ir` files hold a graph and run graph passes; `.ckks` files
/// hold a CKKS program in its exact text form and run program passes (`validate`, `print`).
fn run_file(path: &Path) -> Result<String, String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let result = if path.extension().is_some_and(|e| e == "ckks") {
        let (passes, expect_error) = program_header(&src)?;
        (run_program_passes(&src, &passes), expect_error)
    } else {
        let h = header(&src)?;
        let g = text::parse(&src).map_err(|e| format!("parse: {e}"))?;
        let samples = if h.calib.is_empty() { None } else { Some(synthetic_samples(&g, &h.calib)?) };
        (run_passes(g, &h.passes, &h.backend, false, samples.as_ref()), h.expect_error)
    };
    match (result.0, &result.1) {
        (Ok(out), None) => Ok(out),
        (Ok(_), Some(want)) => Err(format!("expected an error containing `{want}`, every pass succeeded")),
        (Err((out, e)), Some(want)) if e.contains(want.as_str()) => Ok(format!("{out}{e}")),
        (Err((_, e)), Some(want)) => Err(format!("failed with `{}`, expected an error containing `{want}`", e.trim())),
        (Err((_, e)), None) => Err(format!("failed: {}", e.trim())),
    }
}

/// A `.ckks` file's header: `// test: validate, print` and an optional `// expect-error:`.
fn program_header(src: &str) -> Result<(Vec<ProgramPass>, Option<String>), String> {
    let (mut passes, mut expect) = (Vec::new(), None);
    for line in src.lines().map(str::trim).take_while(|l| l.starts_with("//") || l.is_empty()) {
        let body = line.trim_start_matches('/').trim();
        if let Some(p) = body.strip_prefix("test:") {
            passes = p.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
        } else if let Some(e) = body.strip_prefix("expect-error:") {
            expect = Some(e.trim().to_string());
        }
    }
    if passes.is_empty() {
        return Err("no `// test: <passes>` header".into());
    }
    Ok((passes, expect))
}

fn files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if dir.path().is_dir() {
            for f in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|e| e == "ir" || e == "ckks") {
                    out.push(f.path());
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn filetests() {
    let files = files();
    assert!(!files.is_empty(), "no file tests found");
    let mut failures = Vec::new();
    for path in &files {
        let dir = path.parent().and_then(|d| d.file_name()).and_then(|d| d.to_str()).unwrap_or("");
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let name = format!("{dir}__{stem}");
        let result = run_file(path);
        let checked = std::panic::catch_unwind(|| match &result {
            Ok(text) => {
                let mut settings = insta::Settings::clone_current();
                settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests/snapshots"));
                settings.set_prepend_module_to_snapshot(false);
                settings.set_input_file(path);
                settings.bind(|| insta::assert_snapshot!(name.as_str(), text));
                Ok(())
            }
            Err(e) => Err(e.clone()),
        });
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e}", path.display())),
            Err(_) => failures.push(format!("{}: output differs from its snapshot (see above)", path.display())),
        }
    }
    assert!(failures.is_empty(), "{} of {} file tests failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}
