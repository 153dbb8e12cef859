//! Just enough ELF reading to tell a binary's CPU and whether it is statically linked.

use anyhow::{Result, bail};

/// `e_machine` of x86-64.
pub(crate) const EM_X86_64: u16 = 62;
/// `e_machine` of AArch64.
pub(crate) const EM_AARCH64: u16 = 183;
/// Program header type naming the dynamic loader; a static executable has none.
const PT_INTERP: u32 = 3;

/// What the header of an ELF file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElfInfo {
    /// `e_machine`.
    pub(crate) machine: u16,
    /// No `PT_INTERP` program header: runs without a dynamic loader.
    pub(crate) is_static: bool,
}

/// A readable name for an `e_machine` value.
pub(crate) fn machine_name(machine: u16) -> String {
    match machine {
        EM_X86_64 => "x86-64".into(),
        EM_AARCH64 => "aarch64".into(),
        3 => "x86".into(),
        40 => "arm".into(),
        8 => "mips".into(),
        243 => "riscv".into(),
        other => format!("machine {other}"),
    }
}

/// Reads the ELF header and program headers of `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Result<ElfInfo> {
    if bytes.len() < 52 || !bytes.starts_with(b"\x7fELF") {
        bail!("no ELF header");
    }
    let big_endian = match bytes[5] {
        1 => false,
        2 => true,
        other => bail!("unknown ELF data encoding {other}"),
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    let u64_at = |at: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(if big_endian { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    };
    let (phoff, phentsize, phnum) = match bytes[4] {
        1 => (u32_at(28).map(u64::from), u16_at(42), u16_at(44)),
        2 => (u64_at(32), u16_at(54), u16_at(56)),
        other => bail!("unknown ELF class {other}"),
    };
    let (Some(machine), Some(phoff), Some(phentsize), Some(phnum)) = (u16_at(18), phoff, phentsize, phnum) else {
        bail!("truncated ELF header");
    };
    let mut is_static = true;
    for i in 0..u64::from(phnum) {
        let at = phoff.checked_add(i * u64::from(phentsize)).and_then(|at| usize::try_from(at).ok());
        match at.and_then(u32_at) {
            Some(PT_INTERP) => is_static = false,
            Some(_) => {}
            None => bail!("program header {i} lies outside the file"),
        }
    }
    Ok(ElfInfo { machine, is_static })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A 64-bit little-endian ELF with one program header (PT_INTERP if `dynamic`, else PT_LOAD).
    pub(crate) fn fake_elf64(machine: u16, dynamic: bool) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little endian
        elf[6] = 1;
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&machine.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let p_type: u32 = if dynamic { PT_INTERP } else { 1 };
        elf[64..68].copy_from_slice(&p_type.to_le_bytes());
        elf
    }

    #[test]
    fn reads_machine_and_linkage() {
        fn check(bytes: &[u8], expected: Option<ElfInfo>) {
            assert_eq!(parse(bytes).ok(), expected);
        }
        check(&fake_elf64(EM_X86_64, false), Some(ElfInfo { machine: EM_X86_64, is_static: true }));
        check(&fake_elf64(EM_AARCH64, true), Some(ElfInfo { machine: EM_AARCH64, is_static: false }));
        check(b"#!/bin/sh\n", None);
        check(&fake_elf64(EM_X86_64, false)[..66], None);
    }

    #[test]
    fn reads_the_running_test_binary() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = parse(&me).unwrap();
        let expected = if cfg!(target_arch = "x86_64") { EM_X86_64 } else { EM_AARCH64 };
        assert_eq!(info.machine, expected);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_elf_shaped_input(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            class in 0u8..4,
        ) {
            let mut bytes = b"\x7fELF".to_vec();
            bytes.push(class);
            bytes.push(1);
            bytes.extend(tail);
            let _ = parse(&bytes);
        }
    }
}
