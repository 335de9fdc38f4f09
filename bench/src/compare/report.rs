//! The markdown table: one column per system, one row per figure, and graycast's ratio to
//! each peer.

use super::settings::{Scenario, Settings};

/// One system's figures.
#[derive(Default)]
pub(super) struct Row {
    pub(super) name: &'static str,
    pub(super) figures: Vec<(String, String, Option<f64>)>,
}

impl Row {
    /// A figure, with the number ratios are computed from (`None`: no ratio).
    pub(super) fn add(&mut self, what: &str, shown: String, number: Option<f64>) {
        self.figures.push((what.to_owned(), shown, number));
    }
}

pub(super) fn print_table(settings: &Settings, rows: &[Row]) {
    let Some(first) = rows.first() else { return };
    let what = match settings.scenario {
        Scenario::Fanout if settings.interval_ms == 0 => format!(
            "fanout: {} subscribers, {} updates back to back",
            settings.subscribers, settings.updates
        ),
        Scenario::Fanout => format!(
            "fanout: {} subscribers, {} updates {} ms apart",
            settings.subscribers, settings.updates, settings.interval_ms
        ),
        Scenario::Writes => format!(
            "writes: {} writer{} for {} s, each write durable",
            settings.writers,
            if settings.writers == 1 { "" } else { "s" },
            settings.seconds
        ),
        Scenario::Conns => {
            format!("conns: {} idle subscribed connections, then all closed", settings.subscribers)
        }
        Scenario::Storm => format!(
            "storm: {} clients following one key across a restart (SIGTERM, down 2 s); time from \
             the server process starting again until each client has the update written right \
             after the restart",
            settings.subscribers
        ),
        Scenario::Idempotency => "idempotency".to_owned(),
        Scenario::Ofrep => "ofrep".to_owned(),
        Scenario::Schema => "schema".to_owned(),
        Scenario::Requests => "requests".to_owned(),
        Scenario::Ack => format!(
            "ack: acknowledgements of {} updates {} ms apart, first with nobody subscribed, \
             then while each update fans out to {} subscribers",
            settings.updates, settings.interval_ms, settings.subscribers
        ),
    };
    println!("\n{what}\n");
    let mut header = String::from("| |");
    let mut rule = String::from("|---|");
    for row in rows {
        header.push_str(&format!(" {} |", row.name));
        rule.push_str("---|");
    }
    for row in &rows[1..] {
        header.push_str(&format!(" graycast / {} |", row.name));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for (i, (name, _, _)) in first.figures.iter().enumerate() {
        let mut line = format!("| {name} |");
        for row in rows {
            line.push_str(&format!(" {} |", row.figures.get(i).map_or("", |f| f.1.as_str())));
        }
        let ours = first.figures[i].2;
        for row in &rows[1..] {
            let ratio = match (ours, row.figures.get(i).and_then(|f| f.2)) {
                (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            line.push_str(&format!(" {ratio} |"));
        }
        println!("{line}");
    }
}
