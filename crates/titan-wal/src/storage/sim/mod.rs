//! A simulated disk for the storage-fault simulator: an in-memory file system with a volatile
//! write cache, power cuts, torn writes, bit flips and failing operations, all driven by one
//! seeded RNG so that a failing run replays from its seed.
//!
//! The model, per file: `data` is what reads see (the page cache), `durable` what survives a
//! power cut. A write to a file opened with `sync_writes` (`O_DSYNC`) is durable when it
//! returns (FUA); other writes, and truncations, become durable at the file's next `fdatasync`.
//! Directory entries (create, rename, remove) become durable when their directory is synced.
//! A power cut ([`SimDisk::power_cut`]) keeps only what was durable.
//!
//! Faults ([`Faults`]): the crash itself happens *during* a chosen operation, so a write in
//! flight is torn (a prefix of it, cut at a byte or sector boundary, reached the disk) and
//! nothing after it happens; any operation may fail with EIO or ENOSPC (a failed write may have
//! written a prefix); and [`SimDisk::flip_bits`] damages durable bytes at rest. Directories are
//! kept durable as soon as they are made: the log creates its directory once, before anything
//! depends on it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

mod files;

pub use files::{SimFile, SimLock, SimReader, SimStorage};

/// Granularities a torn write may stop at.
const TEAR_GRANULES: [usize; 3] = [1, 512, 4096];

/// What may go wrong, and how often.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// The power is cut during the `n`th mutating operation from when these faults are set
    /// (counted from 1); `None`: never.
    pub crash_at_op: Option<u64>,
    /// Chance that a mutating operation fails (EIO or ENOSPC) without a crash.
    pub fail_rate: f64,
    /// Most times an operation yields to other tasks before completing (lets batches form).
    pub max_yields: u32,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            crash_at_op: None,
            fail_rate: 0.0,
            max_yields: 2,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Inode {
    pub(super) data: Vec<u8>,
    pub(super) durable: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct DiskState {
    pub(super) rng: SmallRng,
    pub(super) faults: Faults,
    pub(super) inodes: BTreeMap<u64, Inode>,
    pub(super) next_inode: u64,
    /// Visible names (files only) and the durable ones.
    pub(super) names: BTreeMap<PathBuf, u64>,
    pub(super) durable_names: BTreeMap<PathBuf, u64>,
    pub(super) dirs: BTreeSet<PathBuf>,
    pub(super) locks: BTreeSet<PathBuf>,
    pub(super) ops: u64,
    pub(super) crashed: bool,
    pub(super) failures: u64,
}

/// Whether an operation goes ahead.
pub(super) enum Step {
    Proceed,
    /// Fails with this error; a write may still land a prefix of `torn` bytes.
    Fail {
        error: io::Error,
        torn: bool,
    },
}

pub(super) fn eio() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::EIO)
}

impl DiskState {
    /// Counts a mutating operation and decides its fate.
    pub(super) fn step(&mut self) -> Step {
        if self.crashed {
            return Step::Fail {
                error: eio(),
                torn: false,
            };
        }
        self.ops += 1;
        if self.faults.crash_at_op == Some(self.ops) {
            self.crashed = true;
            return Step::Fail {
                error: eio(),
                torn: true,
            };
        }
        if self.faults.fail_rate > 0.0 && self.rng.gen_bool(self.faults.fail_rate) {
            self.failures += 1;
            let errno = if self.rng.gen_bool(0.5) {
                nix::libc::EIO
            } else {
                nix::libc::ENOSPC
            };
            return Step::Fail {
                error: io::Error::from_raw_os_error(errno),
                torn: true,
            };
        }
        Step::Proceed
    }

    pub(super) fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::from_raw_os_error(nix::libc::EBADF))
    }

    /// How many bytes of a `len`-byte write a tear keeps.
    fn tear_len(&mut self, len: usize) -> usize {
        let granule = TEAR_GRANULES[self.rng.gen_range(0..TEAR_GRANULES.len())];
        let cut = self.rng.gen_range(0..=len);
        cut - cut % granule
    }

    pub(super) fn write(
        &mut self,
        id: u64,
        bytes: &[u8],
        offset: u64,
        sync: bool,
    ) -> io::Result<usize> {
        let (len, result) = match self.step() {
            Step::Proceed => (bytes.len(), Ok(bytes.len())),
            Step::Fail { error, torn } => {
                let kept = if torn { self.tear_len(bytes.len()) } else { 0 };
                (kept, Err(error))
            }
        };
        let inode = self.inode(id)?;
        let at = offset as usize;
        for image in [&mut inode.data]
            .into_iter()
            .chain(sync.then_some(&mut inode.durable))
        {
            if image.len() < at + len {
                image.resize(at + len, 0);
            }
            image[at..at + len].copy_from_slice(&bytes[..len]);
        }
        result
    }

    pub(super) fn parent_of(path: &Path) -> PathBuf {
        path.parent().unwrap_or(Path::new("")).to_path_buf()
    }
}

/// The shared disk: clone it to hand the same disk to a [`SimStorage`] after a power cut.
#[derive(Debug, Clone)]
pub struct SimDisk(pub(super) Rc<RefCell<DiskState>>);

impl SimDisk {
    pub fn new(seed: u64, faults: Faults) -> SimDisk {
        SimDisk(Rc::new(RefCell::new(DiskState {
            rng: SmallRng::seed_from_u64(seed),
            faults,
            inodes: BTreeMap::new(),
            next_inode: 1,
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            dirs: BTreeSet::new(),
            locks: BTreeSet::new(),
            ops: 0,
            crashed: false,
            failures: 0,
        })))
    }

    pub fn storage(&self) -> SimStorage {
        SimStorage { disk: self.clone() }
    }

    /// True once the power was cut during an operation (everything fails from then on).
    pub fn crashed(&self) -> bool {
        self.0.borrow().crashed
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.0.borrow().ops
    }

    /// Operations failed on purpose so far.
    pub fn failures(&self) -> u64 {
        self.0.borrow().failures
    }

    /// Changes what may go wrong from now on.
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.0.borrow_mut();
        let now = state.ops;
        state.faults = Faults {
            crash_at_op: faults.crash_at_op.map(|n| now + n),
            ..faults
        };
    }

    /// The power comes back: only durable names and bytes are left, locks are gone, and the disk
    /// works again under `faults`.
    pub fn power_cut(&self, faults: Faults) {
        let mut state = self.0.borrow_mut();
        let names = state.durable_names.clone();
        let live: BTreeSet<u64> = names.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));
        for inode in state.inodes.values_mut() {
            inode.data = inode.durable.clone();
        }
        state.names = names;
        state.locks.clear();
        state.crashed = false;
        drop(state);
        self.set_faults(faults);
    }

    /// Flips one random bit in each of `count` random places of the durable files whose names
    /// `pick` accepts; returns (path, offset) of each.
    pub fn flip_bits(&self, count: usize, pick: impl Fn(&Path) -> bool) -> Vec<(PathBuf, u64)> {
        let mut state = self.0.borrow_mut();
        let files: Vec<(PathBuf, u64)> = state
            .durable_names
            .iter()
            .filter(|(p, _)| pick(p))
            .map(|(p, &id)| (p.clone(), id))
            .collect();
        let mut flipped = Vec::new();
        for _ in 0..count {
            if files.is_empty() {
                break;
            }
            let (path, id) = files[state.rng.gen_range(0..files.len())].clone();
            let len = state.inodes[&id].durable.len();
            if len == 0 {
                continue;
            }
            let at = state.rng.gen_range(0..len);
            let bit = 1u8 << state.rng.gen_range(0..8);
            let inode = state.inodes.get_mut(&id).expect("listed");
            inode.durable[at] ^= bit;
            inode.data[at] ^= bit;
            flipped.push((path, at as u64));
        }
        flipped
    }

    /// Creates `dir` and durable files in it (fuzzing and tests build logs this way).
    pub fn write_durable<'a>(&self, dir: &Path, files: impl Iterator<Item = (&'a str, &'a [u8])>) {
        let mut state = self.0.borrow_mut();
        for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            state.dirs.insert(ancestor.to_path_buf());
        }
        for (name, bytes) in files {
            let id = state.next_inode;
            state.next_inode += 1;
            let inode = Inode {
                data: bytes.to_vec(),
                durable: bytes.to_vec(),
            };
            state.inodes.insert(id, inode);
            state.names.insert(dir.join(name), id);
            state.durable_names.insert(dir.join(name), id);
        }
    }

    /// The durable bytes of a file, if its name is durable.
    pub fn durable_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.0.borrow();
        let id = state.durable_names.get(path)?;
        Some(state.inodes[id].durable.clone())
    }

    /// The durable file names under `dir`.
    pub fn durable_names(&self, dir: &Path) -> Vec<PathBuf> {
        let state = self.0.borrow();
        state
            .durable_names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }

    /// A seeded number in `0..n` from the disk's RNG (so the driver shares one seed).
    pub fn random(&self, n: u64) -> u64 {
        self.0.borrow_mut().rng.gen_range(0..n.max(1))
    }

    pub(super) async fn settle(&self) {
        let yields = {
            let mut state = self.0.borrow_mut();
            let max = state.faults.max_yields;
            state.rng.gen_range(0..=max)
        };
        for _ in 0..yields {
            futures_lite::future::yield_now().await;
        }
    }
}
