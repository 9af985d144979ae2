//! File tests: each `tests/filetests/<pass>/<name>.ir` is an IR text file whose header names the
//! passes to run, in order, with their options; the output of every pass (IR text, a report, the
//! CKKS program's text form, or the error) is compared with an insta snapshot
//! `tests/filetests/snapshots/<pass>__<name>.snap`, so a failing test says which pass changed what.
//!
//! Header lines (`//` comments, before the graph):
//! - `// test: verify, fold-affine, egraph, depth, ckks` — the passes, in order (see [`run_pass`]);
//! - `// options: log_n=13 security=none layout=column` — options of the `ckks` pass (whose program
//!   must validate and read back from its exact text form, `Program::print_exact` / `parse`);
//! - `// expect-error: text` — the file is a negative test: some pass must fail with an error
//!   containing `text` (the error is part of the snapshot).
//!
//! Every file is run and every mismatch reported together. To add a test, write the file and run
//! `INSTA_UPDATE=always cargo test --test filetests` (or `cargo insta review`); see
//! `docs/filetests.md`.

use std::path::{Path, PathBuf};

use polyhe_backend::{BackendOptions, LayoutPolicy};
use polyhe_ir::{text, Graph};

/// One file's header.
struct Header {
    passes: Vec<String>,
    options: Vec<(String, String)>,
    expect_error: Option<String>,
}

fn header(src: &str) -> Result<Header, String> {
    let mut h = Header { passes: Vec::new(), options: Vec::new(), expect_error: None };
    for line in src.lines().map(str::trim).take_while(|l| l.starts_with("//") || l.is_empty()) {
        let body = line.trim_start_matches('/').trim();
        if let Some(p) = body.strip_prefix("test:") {
            h.passes = p.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        } else if let Some(o) = body.strip_prefix("options:") {
            for kv in o.split_whitespace() {
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("option `{kv}` is not key=value"))?;
                h.options.push((k.to_string(), v.to_string()));
            }
        } else if let Some(e) = body.strip_prefix("expect-error:") {
            h.expect_error = Some(e.trim().to_string());
        }
    }
    if h.passes.is_empty() {
        return Err("no `// test: <passes>` header".into());
    }
    Ok(h)
}

fn backend_options(options: &[(String, String)]) -> Result<BackendOptions, String> {
    let mut o = BackendOptions::default();
    let num = |k: &str, v: &str| v.parse::<usize>().map_err(|e| format!("option {k}={v}: {e}"));
    for (k, v) in options {
        match k.as_str() {
            "log_n" => o.log_n = Some(num(k, v)? as u32),
            "levels" => o.levels = Some(num(k, v)?),
            "log_scale" => o.log_scale = Some(num(k, v)? as u32),
            "bootstrap_levels" => o.bootstrap_levels = Some(num(k, v)?),
            "fusion_growth" => o.fusion_growth = num(k, v)?,
            "max_rotation_keys" => o.max_rotation_keys = Some(num(k, v)?),
            "security" => {
                o.security = match v.as_str() {
                    "none" => polyhe_runtime::Security::NotSet,
                    "128" => polyhe_runtime::Security::Bits128,
                    _ => return Err(format!("security={v}: none or 128")),
                }
            }
            "layout" => o.layout = Some(v.parse::<LayoutPolicy>()?),
            _ => return Err(format!("unknown option `{k}`")),
        }
    }
    Ok(o)
}

/// Runs one pass on `g`: the new graph (for graph passes) and the text to snapshot.
fn run_pass(pass: &str, g: Graph, options: &[(String, String)]) -> Result<(Graph, String), String> {
    match pass {
        "verify" => {
            polyhe_ir::verify::verify(&g).map_err(|e| e.to_string())?;
            Ok((g, "ok\n".into()))
        }
        "fold-affine" => {
            let out = polyhe_passes::fold_affine(&g).map_err(|e| e.to_string())?;
            let t = text::print(&out, &Default::default());
            Ok((out, t))
        }
        "egraph" => {
            let (out, r) = polyhe_passes::optimize(&g, &Default::default()).map_err(|e| e.to_string())?;
            let t = format!(
                "depth {} -> {}, ct×ct {} -> {}\n{}",
                r.depth_before,
                r.depth_after,
                r.ct_mults_before,
                r.ct_mults_after,
                text::print(&out, &Default::default())
            );
            Ok((out, t))
        }
        "depth" => {
            let r = polyhe_passes::analyze_depth(&g);
            let mut t = format!("total depth {}, ct×ct ops {}\n", r.total_depth, r.ct_mult_ops);
            for (name, d) in &r.outputs {
                t.push_str(&format!("output {name}: depth {d}\n"));
            }
            Ok((g, t))
        }
        "ckks" => {
            let opts = backend_options(options)?;
            let c = polyhe_backend::compile_ckks(&g, &opts).map_err(|e| e.to_string())?;
            let r = &c.report;
            let mut t = format!(
                "depth {}, rotations {}, key switches {}, diagonals {}, ct×ct {}, bootstraps {}\n",
                r.depth, r.rotations, r.key_switches, r.diagonals, r.ct_ct_mults, r.bootstraps
            );
            match &c.program {
                Some(p) => {
                    p.validate().map_err(|e| format!("the program does not validate: {e}"))?;
                    // Every program's exact text form reads back to the same program.
                    let back = polyhe_runtime::Program::parse(&p.print_exact())
                        .map_err(|e| format!("the exact text form does not parse back: {e}"))?;
                    if back != *p {
                        return Err("the exact text form parses back to another program".into());
                    }
                    t.push_str(&p.print());
                }
                None => t.push_str("no program (needs bootstrapping)\n"),
            }
            Ok((g, t))
        }
        other => Err(format!("unknown pass `{other}`")),
    }
}

/// The snapshot text of one file, or a message when the file itself is malformed or an
/// expected error did not occur.
fn run_file(path: &Path) -> Result<String, String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let h = header(&src)?;
    let mut g = text::parse(&src).map_err(|e| format!("parse: {e}"))?;
    let mut out = String::new();
    for pass in &h.passes {
        match run_pass(pass, g, &h.options) {
            Ok((next, t)) => {
                out.push_str(&format!("; after {pass}\n{t}"));
                g = next;
            }
            Err(e) => {
                return match &h.expect_error {
                    Some(want) if e.contains(want.as_str()) => Ok(format!("{out}; error in {pass}\n{e}\n")),
                    Some(want) => Err(format!("{pass} failed with `{e}`, expected an error containing `{want}`")),
                    None => Err(format!("{pass} failed: {e}")),
                };
            }
        }
    }
    match &h.expect_error {
        Some(want) => Err(format!("expected an error containing `{want}`, every pass succeeded")),
        None => Ok(out),
    }
}

fn files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if dir.path().is_dir() {
            for f in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|e| e == "ir") {
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
