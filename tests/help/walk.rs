//! Renders every `--help` page of a clap binary and reads what a user sees
//! first: each command's title (the first line), the title its parent
//! lists for it under `Commands:`, and any option listed without a
//! description. Shared by the help tests of `tidegate` (tests/help.rs) and
//! of `tidegate-loadtest` (loadtest/tests/help.rs), so both read their
//! pages by the same rules.

use std::process::Command;

/// What one command's `--help` shows.
pub struct Page {
    /// Subcommand names from the root joined by spaces ("" for the root).
    pub path: String,
    /// The first line: the command's title.
    pub title: String,
    /// `(name, title)` as `Commands:` lists the subcommands (`help` left out).
    pub listed: Vec<(String, String)>,
    /// Options and arguments listed without a description.
    pub undocumented: Vec<String>,
}

/// Run `bin <path> --help` and read the page.
pub fn render(bin: &str, path: &str) -> Page {
    let out = Command::new(bin)
        .args(path.split_whitespace())
        .arg("--help")
        .output()
        .expect("run the binary for --help");
    assert!(out.status.success(), "`{path} --help` failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut page = Page {
        path: path.to_string(),
        title: text.lines().next().unwrap_or_default().to_string(),
        listed: Vec::new(),
        undocumented: Vec::new(),
    };
    let mut section = "";
    // An option line, and whether a description followed it yet.
    let mut pending: Option<(String, bool)> = None;
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
        }
        let entry = line.trim();
        let indent = line.len() - line.trim_start().len();
        match section {
            "Commands" if line.starts_with("  ") && !line.starts_with("   ") => {
                let (name, title) = entry.split_once(' ').unwrap_or((entry, ""));
                if name != "help" {
                    page.listed
                        .push((name.to_string(), title.trim().to_string()));
                }
            }
            // Flags are indented by 2 (`-c, --config`) or 6 (`--config`);
            // deeper lines belong to the flag above (e.g. `- on: …` values).
            "Options" | "Arguments"
                if indent <= 6 && (entry.starts_with('-') || entry.starts_with('<')) =>
            {
                flush(&mut pending, &mut page.undocumented);
                // Help on the same line sits two spaces or more after the flag.
                pending = Some((entry.to_string(), entry.contains("  ")));
            }
            // A continuation line: help printed below the flag (long help).
            _ if !entry.is_empty() && line.starts_with("   ") => {
                if let Some((_, documented)) = pending.as_mut() {
                    *documented = true;
                }
            }
            _ => flush(&mut pending, &mut page.undocumented),
        }
    }
    flush(&mut pending, &mut page.undocumented);
    page
}

fn flush(pending: &mut Option<(String, bool)>, undocumented: &mut Vec<String>) {
    if let Some((flag, false)) = pending.take() {
        undocumented.push(flag);
    }
}

/// Every page, from the root down through every subcommand.
pub fn walk(bin: &str) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(path) = todo.pop() {
        let page = render(bin, &path);
        for (name, _) in &page.listed {
            todo.push(format!("{path} {name}").trim().to_string());
        }
        pages.push(page);
    }
    pages
}

/// Check every page of `bin` against `expected` (path → title): each title
/// is the expected one, each parent lists its subcommands with the titles
/// their own pages show, no page is missing or unexpected, and every
/// option says what it does. All problems are reported together.
pub fn check(bin: &str, expected: &[(&str, &str)]) {
    let pages = walk(bin);
    let mut problems = Vec::new();
    for page in &pages {
        match expected.iter().find(|(p, _)| *p == page.path) {
            Some((_, want)) if *want != page.title => problems.push(format!(
                "`{} --help` starts with {:?}, expected {want:?}",
                page.path, page.title
            )),
            Some(_) => {}
            None => problems.push(format!("unexpected command `{}`", page.path)),
        }
        for (name, listed) in &page.listed {
            let child = format!("{} {name}", page.path).trim().to_string();
            let own = pages.iter().find(|p| p.path == child).map(|p| &p.title);
            if own != Some(listed) {
                problems.push(format!(
                    "`{}` lists `{name}` as {listed:?}, its own page says {own:?}",
                    page.path
                ));
            }
        }
        for flag in &page.undocumented {
            problems.push(format!("`{} --help`: {flag} has no help", page.path));
        }
    }
    for (path, _) in expected {
        if !pages.iter().any(|p| p.path == *path) {
            problems.push(format!("no command `{path}`"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
