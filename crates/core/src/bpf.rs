//! A classic BPF (cBPF) interpreter, for tcpdump-syntax filters compiled by libpcap.
//!
//! libpcap compiles the expression (in `vxspan-io`, on a dead Ethernet handle); this module
//! validates the program the way the kernel's `bpf_check_classic` does and runs it on each
//! frame. It is written here rather than taken from a crate because it must live in the pure
//! core (no FFI, no `unsafe`), and none of the small cBPF crates guarantees that no input can
//! make it panic. The semantics are those of libpcap's `bpf_filter()`: a load outside the
//! packet rejects the packet, a division by zero rejects it, `len` is the wire length.

use core::fmt;

/// One cBPF instruction, as in `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl BpfInsn {
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        BpfInsn { code, jt, jf, k }
    }
}

// Instruction classes and fields (linux/filter.h, pcap/bpf.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;

const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;

const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const MSH: u16 = 0xa0;

const ADD: u16 = 0x00;
const SUB: u16 = 0x10;
const MUL: u16 = 0x20;
const DIV: u16 = 0x30;
const OR: u16 = 0x40;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const NEG: u16 = 0x80;
const MOD: u16 = 0x90;
const XOR: u16 = 0xa0;

const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;

const SRC_X: u16 = 0x08;
const RVAL_X: u16 = 0x08;
const RVAL_A: u16 = 0x10;
const TXA: u16 = 0x80;

const MEMWORDS: u32 = 16;
/// The kernel's limit (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// Why a program was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfError {
    pub pc: usize,
    pub problem: &'static str,
}

impl fmt::Display for BpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid BPF program at instruction {}: {}",
            self.pc, self.problem
        )
    }
}

impl std::error::Error for BpfError {}

/// A validated cBPF program, also decoded once into [`Op`]s so that running it is one dispatch
/// per instruction instead of a cascade of field tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgram {
    insns: Vec<BpfInsn>,
    ops: Vec<Op>,
}

/// An ALU operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alu {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Or,
    And,
    Lsh,
    Rsh,
    Xor,
}

/// A jump condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    Eq,
    Gt,
    Ge,
    Set,
}

/// A decoded instruction. Jump offsets are relative to the next instruction, as in cBPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    LdAbs(u32, u8),
    LdInd(u32, u8),
    LdImm(u32),
    LdLen,
    LdMem(u8),
    LdxImm(u32),
    LdxLen,
    LdxMem(u8),
    LdxMsh(u32),
    St(u8),
    Stx(u8),
    AluK(Alu, u32),
    AluX(Alu),
    Neg,
    Ja(u32),
    JmpK(Cond, u32, u8, u8),
    JmpX(Cond, u8, u8),
    RetK(u32),
    RetA,
    RetX,
    Tax,
    Txa,
}

fn decode(i: &BpfInsn) -> Op {
    let class = i.code & 0x07;
    let size = match i.code & 0x18 {
        W => 4,
        H => 2,
        _ => 1,
    };
    let alu = |op: u16| match op {
        ADD => Alu::Add,
        SUB => Alu::Sub,
        MUL => Alu::Mul,
        DIV => Alu::Div,
        MOD => Alu::Mod,
        OR => Alu::Or,
        AND => Alu::And,
        LSH => Alu::Lsh,
        RSH => Alu::Rsh,
        _ => Alu::Xor,
    };
    let cond = |op: u16| match op {
        JEQ => Cond::Eq,
        JGT => Cond::Gt,
        JGE => Cond::Ge,
        _ => Cond::Set,
    };
    let mem = (i.k & 0xf) as u8;
    match class {
        LD => match i.code & 0xe0 {
            IMM => Op::LdImm(i.k),
            LEN => Op::LdLen,
            MEM => Op::LdMem(mem),
            ABS => Op::LdAbs(i.k, size),
            _ => Op::LdInd(i.k, size),
        },
        LDX => match i.code & 0xe0 {
            IMM => Op::LdxImm(i.k),
            LEN => Op::LdxLen,
            MEM => Op::LdxMem(mem),
            _ => Op::LdxMsh(i.k),
        },
        ST => Op::St(mem),
        STX => Op::Stx(mem),
        ALU if i.code & 0xf0 == NEG => Op::Neg,
        ALU if i.code & SRC_X != 0 => Op::AluX(alu(i.code & 0xf0)),
        ALU => Op::AluK(alu(i.code & 0xf0), i.k),
        JMP if i.code & 0xf0 == JA => Op::Ja(i.k),
        JMP if i.code & SRC_X != 0 => Op::JmpX(cond(i.code & 0xf0), i.jt, i.jf),
        JMP => Op::JmpK(cond(i.code & 0xf0), i.k, i.jt, i.jf),
        RET => match i.code & 0x18 {
            RVAL_A => Op::RetA,
            RVAL_X => Op::RetX,
            _ => Op::RetK(i.k),
        },
        _ if i.code & TXA != 0 => Op::Txa,
        _ => Op::Tax,
    }
}

#[inline]
fn alu(op: Alu, a: u32, v: u32) -> Option<u32> {
    Some(match op {
        Alu::Add => a.wrapping_add(v),
        Alu::Sub => a.wrapping_sub(v),
        Alu::Mul => a.wrapping_mul(v),
        Alu::Div => a.checked_div(v)?,
        Alu::Mod => a.checked_rem(v)?,
        Alu::Or => a | v,
        Alu::And => a & v,
        Alu::Lsh => a.checked_shl(v).unwrap_or(0),
        Alu::Rsh => a.checked_shr(v).unwrap_or(0),
        Alu::Xor => a ^ v,
    })
}

#[inline]
fn test(c: Cond, a: u32, v: u32) -> bool {
    match c {
        Cond::Eq => a == v,
        Cond::Gt => a > v,
        Cond::Ge => a >= v,
        Cond::Set => a & v != 0,
    }
}

#[inline]
fn load(pkt: &[u8], off: u32, size: u8) -> Option<u32> {
    let off = off as usize;
    match size {
        4 => pkt
            .get(off..off.checked_add(4)?)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        2 => pkt
            .get(off..off.checked_add(2)?)
            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]]))),
        _ => pkt.get(off).map(|b| u32::from(*b)),
    }
}

impl BpfProgram {
    /// Validates `insns`: known opcodes, jumps that stay inside the program and go forward,
    /// scratch memory indices below 16, no constant division by zero, and a final `ret`.
    pub fn new(insns: Vec<BpfInsn>) -> Result<Self, BpfError> {
        let n = insns.len();
        if n == 0 || n > MAX_INSNS {
            return Err(BpfError {
                pc: 0,
                problem: "program length must be 1 to 4096 instructions",
            });
        }
        for (pc, i) in insns.iter().enumerate() {
            let bad = |problem| Err(BpfError { pc, problem });
            let class = i.code & 0x07;
            match class {
                LD | LDX => {
                    let mode = i.code & 0xe0;
                    let size = i.code & 0x18;
                    let ok = match (class, mode) {
                        (LD, IMM | LEN) => size == W,
                        (LD, ABS | IND) => matches!(size, W | H | B),
                        (LD | LDX, MEM) => {
                            if i.k >= MEMWORDS {
                                return bad("scratch memory index out of range");
                            }
                            size == W
                        }
                        (LDX, IMM | LEN) => size == W,
                        (LDX, MSH) => size == B,
                        _ => false,
                    };
                    if !ok || i.code & !0xff != 0 {
                        return bad("unknown load instruction");
                    }
                }
                ST | STX => {
                    if i.code != class || i.k >= MEMWORDS {
                        return bad("bad store instruction");
                    }
                }
                ALU => {
                    let op = i.code & 0xf0;
                    if !matches!(
                        op,
                        ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | NEG | MOD | XOR
                    ) || i.code & !0xff != 0
                    {
                        return bad("unknown ALU instruction");
                    }
                    if matches!(op, DIV | MOD) && i.code & SRC_X == 0 && i.k == 0 {
                        return bad("division by constant zero");
                    }
                }
                JMP => {
                    let op = i.code & 0xf0;
                    if op == JA {
                        if i.code != JMP || (i.k as usize) >= n - pc - 1 {
                            return bad("jump out of the program");
                        }
                    } else if matches!(op, JEQ | JGT | JGE | JSET) && i.code & !0xff == 0 {
                        if pc + 1 + usize::from(i.jt.max(i.jf)) >= n {
                            return bad("jump out of the program");
                        }
                    } else {
                        return bad("unknown jump instruction");
                    }
                }
                RET => {
                    if !matches!(i.code & 0x18, 0 | RVAL_X | RVAL_A) || i.code & !0x1f != 0 {
                        return bad("unknown return instruction");
                    }
                }
                _ => {
                    // MISC
                    if i.code != MISC && i.code != (MISC | TXA) {
                        return bad("unknown misc instruction");
                    }
                }
            }
        }
        if insns[n - 1].code & 0x07 != RET {
            return Err(BpfError {
                pc: n - 1,
                problem: "the program does not end with ret",
            });
        }
        let ops = insns.iter().map(decode).collect();
        Ok(BpfProgram { insns, ops })
    }

    pub fn insns(&self) -> &[BpfInsn] {
        &self.insns
    }

    /// Whether the program accepts `pkt` (a non-zero return value).
    #[inline]
    pub fn matches(&self, pkt: &[u8], wire_len: u32) -> bool {
        self.run(pkt, wire_len) != 0
    }

    /// Runs the program; returns its result (0 = reject). Never panics: the validation in
    /// [`BpfProgram::new`] bounds every jump, and every packet load is checked.
    pub fn run(&self, pkt: &[u8], wire_len: u32) -> u32 {
        let mut mem = [0u32; MEMWORDS as usize];
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut pc = 0usize;
        loop {
            let Some(op) = self.ops.get(pc) else { return 0 };
            pc += 1;
            match *op {
                Op::LdAbs(k, size) => match load(pkt, k, size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::LdInd(k, size) => match x.checked_add(k).and_then(|off| load(pkt, off, size)) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::LdImm(k) => a = k,
                Op::LdLen => a = wire_len,
                Op::LdMem(m) => a = mem[usize::from(m)],
                Op::LdxImm(k) => x = k,
                Op::LdxLen => x = wire_len,
                Op::LdxMem(m) => x = mem[usize::from(m)],
                Op::LdxMsh(k) => match load(pkt, k, 1) {
                    Some(v) => x = (v & 0xf) << 2,
                    None => return 0,
                },
                Op::St(m) => mem[usize::from(m)] = a,
                Op::Stx(m) => mem[usize::from(m)] = x,
                Op::AluK(op, k) => match alu(op, a, k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::AluX(op) => match alu(op, a, x) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::Neg => a = a.wrapping_neg(),
                Op::Ja(k) => pc += k as usize,
                Op::JmpK(c, k, jt, jf) => pc += usize::from(if test(c, a, k) { jt } else { jf }),
                Op::JmpX(c, jt, jf) => pc += usize::from(if test(c, a, x) { jt } else { jf }),
                Op::RetK(k) => return k,
                Op::RetA => return a,
                Op::RetX => return x,
                Op::Tax => x = a,
                Op::Txa => a = x,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `tcpdump -dd 'vlan 10'` equivalent, hand-assembled: ether[12:2] == 0x8100 && ether[14:2] & 0xfff == 10
    fn vlan10() -> BpfProgram {
        BpfProgram::new(vec![
            BpfInsn::new(LD | H | ABS, 0, 0, 12),
            BpfInsn::new(JMP | JEQ, 0, 3, 0x8100),
            BpfInsn::new(LD | H | ABS, 0, 0, 14),
            BpfInsn::new(ALU | AND, 0, 0, 0x0fff),
            BpfInsn::new(JMP | JEQ, 0, 1, 10),
            BpfInsn::new(RET, 0, 0, 262144),
            BpfInsn::new(RET, 0, 0, 0),
        ])
        .unwrap()
    }

    #[test]
    fn runs() {
        let p = vlan10();
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a, 0x08, 0x00]);
        assert!(p.matches(&f, f.len() as u32));
        f[15] = 11;
        assert!(!p.matches(&f, f.len() as u32));
        // A load past the end rejects.
        assert!(!p.matches(&f[..15], 15));
    }

    #[test]
    fn msh_ind_and_memory() {
        // X = 4 * (P[14] & 0xf); A = P[X + 14 + 2] (TCP dst port high byte area); M[3] = A; A = M[3]; ret A
        let p = BpfProgram::new(vec![
            BpfInsn::new(LDX | B | MSH, 0, 0, 14),
            BpfInsn::new(LD | H | IND, 0, 0, 16),
            BpfInsn::new(ST, 0, 0, 3),
            BpfInsn::new(LD | IMM, 0, 0, 0),
            BpfInsn::new(LD | MEM, 0, 0, 3),
            BpfInsn::new(RET | RVAL_A, 0, 0, 0),
        ])
        .unwrap();
        let mut f = vec![0u8; 14];
        f.push(0x45);
        f.extend_from_slice(&[0; 19]);
        f.extend_from_slice(&[0x01, 0xbb, 0x00, 0x50]);
        assert_eq!(p.run(&f, 0), 0x0050);
    }

    #[test]
    fn alu_edge_cases() {
        let prog = |op: u16, k: u32, a: u32| {
            BpfProgram::new(vec![
                BpfInsn::new(LD | IMM, 0, 0, a),
                BpfInsn::new(LDX | IMM, 0, 0, k),
                BpfInsn::new(ALU | op | SRC_X, 0, 0, 0),
                BpfInsn::new(RET | RVAL_A, 0, 0, 0),
            ])
            .unwrap()
            .run(&[], 0)
        };
        assert_eq!(prog(DIV, 0, 5), 0);
        assert_eq!(prog(MOD, 0, 5), 0);
        assert_eq!(prog(DIV, 2, 5), 2);
        assert_eq!(prog(LSH, 40, 5), 0);
        assert_eq!(prog(SUB, 6, 5), u32::MAX);
    }

    #[test]
    fn validation() {
        let r = |insns: Vec<BpfInsn>| BpfProgram::new(insns).map(|_| ()).map_err(|e| e.problem);
        assert!(r(vec![]).is_err());
        assert!(r(vec![BpfInsn::new(LD | IMM, 0, 0, 1)]).is_err());
        assert!(r(vec![
            BpfInsn::new(JMP | JEQ, 5, 0, 1),
            BpfInsn::new(RET, 0, 0, 0)
        ])
        .is_err());
        assert!(r(vec![
            BpfInsn::new(JMP | JA, 0, 0, 1),
            BpfInsn::new(RET, 0, 0, 0)
        ])
        .is_err());
        assert!(r(vec![BpfInsn::new(ST, 0, 0, 16), BpfInsn::new(RET, 0, 0, 0)]).is_err());
        assert!(r(vec![
            BpfInsn::new(ALU | DIV, 0, 0, 0),
            BpfInsn::new(RET, 0, 0, 0)
        ])
        .is_err());
        assert!(r(vec![
            BpfInsn::new(0xffff, 0, 0, 0),
            BpfInsn::new(RET, 0, 0, 0)
        ])
        .is_err());
        assert!(r(vec![BpfInsn::new(RET, 0, 0, 0)]).is_ok());
    }

    #[test]
    fn random_programs_never_panic() {
        // A small deterministic generator: every valid program runs without panicking.
        let mut s: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let pkt: Vec<u8> = (0..64).map(|i| i as u8).collect();
        let mut valid = 0;
        for _ in 0..20000 {
            let n = (next() % 8 + 1) as usize;
            let mut insns: Vec<BpfInsn> = (0..n)
                .map(|_| {
                    let r = next();
                    BpfInsn::new(
                        (r & 0xff) as u16,
                        (r >> 8) as u8 % 4,
                        (r >> 16) as u8 % 4,
                        (r >> 32) as u32 % 80,
                    )
                })
                .collect();
            insns.push(BpfInsn::new(RET | RVAL_A, 0, 0, 0));
            if let Ok(p) = BpfProgram::new(insns) {
                valid += 1;
                p.run(&pkt, 64);
                p.run(&pkt[..3], 3);
            }
        }
        assert!(valid > 100, "{valid}");
    }
}
