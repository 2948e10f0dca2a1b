//! The skill interner: skill names (a job's TYPE for skill jobs, `GENERAL` for built-ins, and the
//! skills workers advertise) as small [`SkillId`]s local to one core, which index the ready queues
//! and the directory's per-skill worker lists. Bounded by [`MAX_SKILLS`].

use std::collections::HashMap;

use super::limits::MAX_SKILLS;

/// Interned skill, local to one core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkillId(pub u16);

/// Interns skill names to small ids (`GENERAL` is always 0). Bounded by [`MAX_SKILLS`].
#[derive(Debug)]
pub struct Skills {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, SkillId>,
}

impl Skills {
    pub fn new() -> Skills {
        let general: Box<str> = super::model::GENERAL.into();
        Skills {
            names: vec![general.clone()],
            ids: HashMap::from([(general, SkillId(0))]),
        }
    }

    /// The id of `name`, interning it; `None` when [`MAX_SKILLS`] are interned already.
    pub fn intern(&mut self, name: &str) -> Option<SkillId> {
        if name == super::model::GENERAL {
            // Every built-in job needs it: skip hashing for the common case.
            return Some(SkillId(0));
        }
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        if self.names.len() >= MAX_SKILLS {
            return None;
        }
        let id = SkillId(self.names.len() as u16);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        Some(id)
    }

    pub fn get(&self, name: &str) -> Option<SkillId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: SkillId) -> &str {
        &self.names[usize::from(id.0)]
    }

    /// Interned names in id order (`GENERAL` first).
    pub fn names(&self) -> &[Box<str>] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_intern_with_general_first() {
        let mut s = Skills::new();
        assert_eq!(s.get("GENERAL"), Some(SkillId(0)));
        let a = s.intern("PDF").unwrap();
        assert_eq!(s.intern("PDF"), Some(a));
        assert_eq!(s.name(a), "PDF");
    }
}
