//! The canonical STATS text: [`ClusterStats::render_text`], the seed's layout (DESIGN.md §1).
//!
//! The text is part of the protocol, as it was in the Java original: the master renders it for the
//! `Stats` opcode and every client prints it unchanged, so the layout lives beside the message it
//! renders rather than in the CLI. Byte for byte it follows the original's format strings (the
//! load column is `%-12s`, percentages round down), without the original's leading blank line,
//! plus one last line when state is kept in memory only.

use std::fmt::Write as _;

use super::client::{ClusterStats, Persistence, WorkerStatus};

/// Width of the load column (`0/4 (0%)` padded), the original's `%-12s`.
const LOAD_COLUMN: usize = 12;

impl ClusterStats {
    /// The STATS text, every line ending in `\n`.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail, so the fmt::Results below are ignored.
        s.push_str("--- TITAN SYSTEM MONITOR ---\n");
        let _ = writeln!(s, "Active Workers:    {}", self.active_workers);
        let _ = writeln!(s, "Execution Queue:   {} jobs", self.queued);
        let _ = writeln!(s, "Delayed (Time):    {} jobs", self.delayed);
        let _ = writeln!(s, "Blocked (DAG):     {} jobs", self.blocked);
        let _ = writeln!(s, "Dead Letter (DLQ): {} jobs", self.dlq);
        s.push_str("-------------------------------\n");
        if self.workers.is_empty() {
            s.push_str("[INFO] No workers currently connected.\n");
        } else {
            s.push_str("Worker Status:\n");
            for worker in &self.workers {
                render_worker(&mut s, worker);
            }
        }
        match &self.persistence {
            Persistence::Wal => {}
            Persistence::MemoryOnly => {
                s.push_str("Persistence:       memory only (a master restart loses all jobs)\n")
            }
            failing @ Persistence::Failing { .. } => {
                let _ = writeln!(s, "Persistence:       {failing}");
            }
        }
        s
    }
}

fn render_worker(s: &mut String, w: &WorkerStatus) {
    let load = format!("{}/{} ({}%)", w.running, w.capacity, load_percent(w));
    let _ = writeln!(
        s,
        " • [{}] Load: {load:<LOAD_COLUMN$} | Skills: [{}]",
        w.port,
        w.skills.join(", ")
    );
    for service in &w.services {
        let _ = writeln!(s, "    └── ⚙️ Service ID: {service}");
    }
}

/// `running * 100 / capacity`, rounded down; 0 for a worker that advertises no capacity.
fn load_percent(w: &WorkerStatus) -> u64 {
    match w.capacity {
        0 => 0,
        cap => u64::from(w.running) * 100 / u64::from(cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(port: u16, running: u32, capacity: u32, services: &[&str]) -> WorkerStatus {
        WorkerStatus {
            id: u32::from(port),
            port,
            running,
            capacity,
            skills: vec!["GENERAL".into()],
            parent: None,
            ephemeral: false,
            services: services.iter().map(|s| s.to_string()).collect(),
            silent_for_ms: 0,
        }
    }

    fn stats(workers: Vec<WorkerStatus>, persistence: Persistence) -> ClusterStats {
        ClusterStats {
            active_workers: workers.len() as u32,
            queued: 1,
            delayed: 0,
            blocked: 0,
            dlq: 0,
            running: 0,
            completed: 0,
            cancelled: 0,
            upstream_failed: 0,
            shards: 1,
            persistence,
            workers,
            scaling: vec![],
            logs: Default::default(),
        }
    }

    /// DESIGN.md §1's example, byte for byte (the gear is U+2699 U+FE0F).
    const DESIGN_EXAMPLE: &str = "--- TITAN SYSTEM MONITOR ---\n\
Active Workers:    5\n\
Execution Queue:   1 jobs\n\
Delayed (Time):    0 jobs\n\
Blocked (DAG):     0 jobs\n\
Dead Letter (DLQ): 0 jobs\n\
-------------------------------\n\
Worker Status:\n \
• [8081] Load: 0/4 (0%)     | Skills: [GENERAL]\n    \
└── \u{2699}\u{fe0f} Service ID: WORKER_B\n";

    #[test]
    fn design_example_is_reproduced_exactly() {
        let mut s = stats(vec![worker(8081, 0, 4, &["WORKER_B"])], Persistence::Wal);
        // The example shows only one of its five workers.
        s.active_workers = 5;
        let text = s.render_text();
        assert_eq!(text, DESIGN_EXAMPLE);
        assert_eq!(
            text.lines().nth(8).unwrap().as_bytes(),
            " • [8081] Load: 0/4 (0%)     | Skills: [GENERAL]".as_bytes()
        );
    }

    #[test]
    fn load_column_is_twelve_wide_and_percent_rounds_down() {
        let mut w = worker(8080, 1, 3, &[]);
        w.skills = vec!["GENERAL".into(), "PDF_CONVERT".into()];
        let text = stats(vec![w], Persistence::Wal).render_text();
        assert!(
            text.contains(" • [8080] Load: 1/3 (33%)    | Skills: [GENERAL, PDF_CONVERT]\n"),
            "{text}"
        );
        // A load wider than the column pushes the separator right, as %-12s does.
        let text = stats(vec![worker(8080, 1000, 4000, &[])], Persistence::Wal).render_text();
        assert!(text.contains("Load: 1000/4000 (25%) | Skills"), "{text}");
    }

    #[test]
    fn zero_capacity_prints_zero_percent() {
        let text = stats(vec![worker(9000, 0, 0, &[])], Persistence::Wal).render_text();
        assert!(text.contains("Load: 0/0 (0%)     | Skills"), "{text}");
    }

    #[test]
    fn services_are_listed_under_their_worker_in_order() {
        let text = stats(
            vec![
                worker(8080, 0, 4, &["WORKER_A", "START_DASH"]),
                worker(8081, 2, 4, &[]),
            ],
            Persistence::Wal,
        )
        .render_text();
        let lines: Vec<&str> = text.lines().skip(8).collect();
        assert_eq!(
            lines,
            [
                " • [8080] Load: 0/4 (0%)     | Skills: [GENERAL]",
                "    └── ⚙️ Service ID: WORKER_A",
                "    └── ⚙️ Service ID: START_DASH",
                " • [8081] Load: 2/4 (50%)    | Skills: [GENERAL]",
            ]
        );
    }

    #[test]
    fn no_workers_prints_the_info_line_instead_of_the_worker_block() {
        let text = stats(Vec::new(), Persistence::Wal).render_text();
        assert!(
            text.ends_with(
                "-------------------------------\n[INFO] No workers currently connected.\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Worker Status:"));
    }

    #[test]
    fn memory_only_adds_one_last_line_and_wal_adds_none() {
        let text = stats(Vec::new(), Persistence::MemoryOnly).render_text();
        assert!(text.ends_with(
            "[INFO] No workers currently connected.\n\
             Persistence:       memory only (a master restart loses all jobs)\n"
        ));
        let wal = stats(Vec::new(), Persistence::Wal).render_text();
        assert_eq!(wal.lines().count(), 8);
        let failing = Persistence::Failing {
            cause: "disk full".into(),
        };
        let odd = stats(Vec::new(), failing).render_text();
        assert!(
            odd.ends_with(
                "Persistence:       write-ahead log failing, changes refused (disk full)\n"
            ),
            "{odd}"
        );
    }

    #[test]
    fn every_line_ends_with_a_newline() {
        let text = stats(vec![worker(1, 0, 1, &["S"])], Persistence::MemoryOnly).render_text();
        assert!(text.ends_with('\n'));
        assert!(!text.contains("\n\n"));
    }
}
