//! The README's alert rules, as Prometheus' own tool reads them: `promtool check rules`
//! lints them, and `promtool test rules` (with `tests/data/alerts.test.yml`) feeds each alert
//! the series that must fire it and the ones that must not.

use std::path::Path;
use std::process::Command;

/// The README's `yaml` block under "## Operations" that holds the rules.
fn readme_rules() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let mut heading = "";
    let mut block: Option<String> = None;
    for line in readme.lines() {
        match &mut block {
            Some(text) if line.starts_with("```") => {
                if heading == "## Operations" && text.starts_with("groups:") {
                    return text.clone();
                }
                block = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
            None if line == "```yaml" => block = Some(String::new()),
            None if line.starts_with("## ") => heading = line,
            None => {}
        }
    }
    panic!("no yaml block of alert rules under ## Operations in README.md");
}

/// Runs promtool in `dir`: whether it succeeded, and what it said.
fn run_promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian: prometheus; scripts/test.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let (ok, said) = run_promtool(args, dir);
    assert!(ok, "promtool {args:?}:\n{said}");
    said
}

#[test]
fn the_readme_alerts_pass_promtool_check_and_test_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.yml"), readme_rules()).unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/alerts.test.yml");
    std::fs::copy(&tests, dir.path().join("alerts.test.yml")).unwrap();
    let checked = promtool(&["check", "rules", "alerts.yml"], dir.path());
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    promtool(&["test", "rules", "alerts.test.yml"], dir.path());
}

/// The tests can fail: an alert that fires on the wrong series is caught.
#[test]
fn a_wrong_alert_fails_promtool_test_rules() {
    let dir = tempfile::tempdir().unwrap();
    let wrong =
        readme_rules().replace("graycast_etcd_reachable == 0", "graycast_etcd_reachable == 1");
    std::fs::write(dir.path().join("alerts.yml"), wrong).unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/alerts.test.yml");
    std::fs::copy(&tests, dir.path().join("alerts.test.yml")).unwrap();
    let (ok, said) = run_promtool(&["test", "rules", "alerts.test.yml"], dir.path());
    assert!(!ok, "a wrong rule passed its tests");
    assert!(said.contains("alertname: GraycastEtcdUnreachable"), "{said}");
}
