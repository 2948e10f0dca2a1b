//! What a worker passes on to the workers it starts (an Inception `DEPLOY` of itself, or a
//! child spawned for scaling): the master, its directories, capacity, skills and job niceness,
//! as the child's command line, and its worker key, in the child's environment (never on its
//! command line, which every user can read).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::exec::{self, Program};
use titan_auth::Credential;

/// What a child worker inherits from this one.
#[derive(Clone, Debug)]
pub struct ChildTemplate {
    pub master: String,
    /// Absolute: a child's cwd is a job directory, where relative paths would point nowhere.
    pub perm_files: PathBuf,
    pub workspace: PathBuf,
    pub capacity: u32,
    pub skills: Vec<String>,
    pub job_nice: i32,
    /// The worker key children register with.
    pub credential: Credential,
}

impl ChildTemplate {
    pub fn new(
        master: String,
        perm_files: &Path,
        workspace: &Path,
        capacity: u32,
        skills: Vec<String>,
        job_nice: i32,
        credential: Credential,
    ) -> ChildTemplate {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        ChildTemplate {
            master,
            perm_files: absolute(perm_files),
            workspace: absolute(workspace),
            capacity,
            skills,
            job_nice,
            credential,
        }
    }

    /// `spec` with this worker's key handed to the child worker it starts (`TITAN_KEY`).
    pub(super) fn with_key(&self, spec: exec::JobSpec) -> exec::JobSpec {
        spec.with_env(titan_auth::ENV_KEY, self.credential.to_env_value())
    }

    /// `titan worker` arguments for a child on `port`.
    pub(super) fn args(&self, port: u16, parent: Option<u32>) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            vec!["worker".into(), "--port".into(), port.to_string().into()];
        args.extend(["--master".into(), self.master.clone().into()]);
        args.extend([
            "--perm-files".into(),
            self.perm_files.clone().into_os_string(),
        ]);
        args.extend([
            "--workspace".into(),
            self.workspace.clone().into_os_string(),
        ]);
        if let Some(id) = parent {
            args.extend(["--parent".into(), id.to_string().into()]);
        }
        args.extend(["--job-nice".into(), self.job_nice.to_string().into()]);
        args
    }

    /// An ephemeral child worker for scaling: a free port, this worker's capacity and skills,
    /// and the master's ticket so the master can match it to its decision.
    pub(super) fn scaled(&self, ticket: u64, parent: Option<u32>) -> exec::JobSpec {
        let mut args = self.args(0, parent);
        args.extend([
            "--ephemeral".into(),
            "--spawn-ticket".into(),
            ticket.to_string().into(),
        ]);
        args.extend(["--capacity".into(), self.capacity.to_string().into()]);
        args.extend(["--skills".into(), self.skills.join(",").into()]);
        let name = format!("scale-{ticket}");
        self.with_key(exec::JobSpec::new(
            name.clone(),
            name,
            Program::trusted(current_exe(), args),
        ))
    }
}

/// This program, to start a child worker with.
pub(super) fn current_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "titan".into())
}
