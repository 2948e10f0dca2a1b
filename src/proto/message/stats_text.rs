//! The canonical STATS text (the `Stats` opcode's reply), in the seed's layout.

use std::fmt::Write;

use super::client::ClusterStats;

impl ClusterStats {
    pub fn render_text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "--- TITAN SYSTEM MONITOR ---");
        let _ = writeln!(t, "Active Workers:    {}", self.active_workers);
        let _ = writeln!(t, "Execution Queue:   {} jobs", self.queued);
        let _ = writeln!(t, "Delayed (Time):    {} jobs", self.delayed);
        let _ = writeln!(t, "Blocked (DAG):     {} jobs", self.blocked);
        let _ = writeln!(t, "Dead Letter (DLQ): {} jobs", self.dlq);
        let _ = writeln!(t, "-------------------------------");
        let _ = writeln!(t, "Worker Status:");
        if self.workers.is_empty() {
            let _ = writeln!(t, "[INFO] No workers currently connected.");
        }
        for w in &self.workers {
            let pct = (w.running * 100).checked_div(w.capacity).unwrap_or(0);
            let load = format!("{}/{} ({}%)", w.running, w.capacity, pct);
            let _ = writeln!(
                t,
                " • [{}] Load: {:<12} | Skills: [{}]",
                w.port,
                load,
                w.skills.join(", ")
            );
            for s in &w.services {
                let _ = writeln!(t, "    └── ⚙️ Service ID: {s}");
            }
        }
        if self.persistence == "memory-only" {
            let _ = writeln!(
                t,
                "Persistence:       memory only (a master restart loses all jobs)"
            );
        }
        t
    }
}
