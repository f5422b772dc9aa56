//! The per-worker table of Python objects that outlive one round of I/O (a streaming body's
//! iterator while its earlier chunks are being sent). Connections hold only a [`Handle`], a
//! plain number, so the I/O side never owns, clones or drops a Python object.

/// A slot in a [`Table`]; the generation makes a stale handle miss instead of hitting a reused slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    index: u32,
    generation: u32,
}

/// A slab of values; `T` holds `Py<...>` objects, so entries are removed only while attached.
pub struct Table<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    pub fn insert(&mut self, value: T) -> Handle {
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.0 = slot.0.wrapping_add(1);
                slot.1 = Some(value);
                Handle {
                    index,
                    generation: slot.0,
                }
            }
            None => {
                self.slots.push((0, Some(value)));
                Handle {
                    index: (self.slots.len() - 1) as u32,
                    generation: 0,
                }
            }
        }
    }

    pub fn get_mut(&mut self, handle: Handle) -> Option<&mut T> {
        match self.slots.get_mut(handle.index as usize) {
            Some((generation, value)) if *generation == handle.generation => value.as_mut(),
            _ => None,
        }
    }

    pub fn remove(&mut self, handle: Handle) -> Option<T> {
        let value = match self.slots.get_mut(handle.index as usize) {
            Some((generation, value)) if *generation == handle.generation => value.take(),
            _ => None,
        }?;
        self.free.push(handle.index);
        Some(value)
    }

    /// Removes every entry (for shutdown, while attached).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.free.clear();
        self.slots.drain(..).filter_map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_miss() {
        let mut table = Table::default();
        let a = table.insert("a");
        assert_eq!(table.remove(a), Some("a"));
        let b = table.insert("b");
        assert_eq!(table.get_mut(a), None);
        assert_eq!(table.remove(a), None);
        assert_eq!(table.get_mut(b), Some(&mut "b"));
        assert_eq!(table.drain().collect::<Vec<_>>(), vec!["b"]);
    }
}
