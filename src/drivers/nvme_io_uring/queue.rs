//! One io_uring per queue carrying NVMe commands as `IORING_OP_URING_CMD`
//! (docs/contract/requests.md §7.2): 128-byte SQEs whose command area holds a
//! `struct nvme_uring_cmd`, 32-byte CQEs.
//!
//! As in the io_uring driver, every request in the ring owns a slot whose
//! index is the SQE's `user_data`, and there are as many slots as CQ
//! entries, so the completion queue never overflows. A slot also holds the
//! data the library itself hands to the device (a discard's range, a zone
//! report's buffer); slots never move while busy.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};

use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::command::{self as cmd, NvmeCmd};
use super::namespace::Namespace;
use super::status::{self, Failure};
use super::zones::{self, ENTRY_SIZE};
use crate::core::queue::{Enqueue, QueueDriver};
use crate::core::request::{Completion, Op, Request, ZoneOp, REQ_NO_UNMAP};
use crate::core::{Error, Result};
use crate::drivers::uring_eventfd::CompletionFd;
use crate::drivers::uring_wait;

const FIXED_FILE: types::Fixed = types::Fixed(0);

type Ring = IoUring<squeue::Entry128, cqueue::Entry32>;

/// Library-owned data a request hands to the device.
enum Payload {
    None,
    /// Dataset Management range of a discard.
    Range([u8; 16]),
    /// Zone Management Receive: the buffer for the header and up to
    /// `asked` descriptors.
    Report {
        buf: Box<[u8]>,
        asked: u32,
    },
}

struct Slot {
    req: Request,
    payload: Payload,
}

// SAFETY: the request's pointers are the application's buffers (see
// `Request`); a queue is used by one thread at a time.
unsafe impl Send for Slot {}

pub struct NvmeQueue {
    ring: Ring,
    ns: Arc<Namespace>,
    read_only: bool,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    busy: usize,
    eventfd: CompletionFd,
}

impl NvmeQueue {
    pub fn new(ns: Arc<Namespace>, entries: u32, read_only: bool) -> Result<Self> {
        let ring = Ring::builder().build(entries)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(Error::not_supported(
                "io_uring without IORING_FEAT_EXT_ARG (Linux < 5.11) is not supported",
            ));
        }
        let submitter = ring.submitter();
        submitter.register_files(&[ns.fd.as_raw_fd()])?;
        let eventfd = CompletionFd::new()?;
        let capacity = ring.params().cq_entries();
        Ok(NvmeQueue {
            ring,
            ns,
            read_only,
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity).rev().collect(),
            busy: 0,
            eventfd,
        })
    }

    /// The library checks of docs/contract/requests.md §7.2, in upstream's order.
    fn refuse(&self, req: &Request) -> Option<Failure> {
        let limits = &self.ns.limits;
        let len = req.data_len();
        let einval = |msg: &'static CStr| Some((-libc::EINVAL, msg));
        match req.op {
            Op::WriteZeroes { .. } if limits.max_write_zeroes == 0 => {
                return Some((-libc::ENOTSUP, c"write zeroes not supported"))
            }
            Op::Discard { .. } if limits.max_discard == 0 => {
                return Some((-libc::ENOTSUP, c"discard not supported"))
            }
            _ => {}
        }
        // Zone management changes the device too ([Q] of §7.2: upstream
        // lets a read-only instance reset zones).
        let modifying = req.op.is_modifying();
        if self.read_only && modifying {
            return Some((-libc::EBADF, c"driver is in read-only mode"));
        }
        if matches!(
            req.op,
            Op::Flush | Op::ReportZones { .. } | Op::ZoneMgmt { .. }
        ) {
            return None;
        }
        let lba = limits.lba_size as u64;
        if req.start % lba != 0 || len % lba != 0 {
            return einval(c"start and len must be multiples of property \"request-alignment\"");
        }
        if len == 0 {
            return einval(c"len must be positive");
        }
        match req.op {
            Op::WriteZeroes { .. } if len > limits.max_write_zeroes => {
                einval(c"len must not exceed property \"max-write-zeroes-len\"")
            }
            Op::Discard { .. } if len > limits.max_discard => {
                einval(c"len must not exceed property \"max-discard-len\"")
            }
            _ if req.op.is_rw() && len > limits.max_transfer as u64 => {
                einval(c"len must not exceed property \"max-transfer\"")
            }
            _ => None,
        }
    }

    /// The SQE of the request in slot `idx` (whose payload is in place).
    fn sqe(&self, idx: u32) -> squeue::Entry128 {
        let slot = self.slots[idx as usize].as_ref().expect("busy slot");
        let req = &slot.req;
        let ns = &self.ns;
        let lba = req.start >> ns.lba_shift;
        // Checked at enqueue: lengths are whole LBAs within the limits.
        let nlb = ((req.data_len() >> ns.lba_shift) as u32).wrapping_sub(1);
        let fua = if req.fua() { cmd::CDW12_FUA } else { 0 };
        let io = |opcode| NvmeCmd::new(opcode, ns.nsid);
        let (op, c) = match (req.op, &slot.payload) {
            (Op::Read { buf, len }, _) => (
                cmd::NVME_URING_CMD_IO,
                io(cmd::IO_READ).slba(lba).data(buf, len as u32),
            ),
            (Op::Write { buf, len }, _) => (
                cmd::NVME_URING_CMD_IO,
                io(cmd::IO_WRITE).slba(lba).data(buf, len as u32),
            ),
            (Op::Readv { iov, iovcnt }, _) => (
                cmd::NVME_URING_CMD_IO_VEC,
                io(cmd::IO_READ).slba(lba).data(iov.cast(), iovcnt),
            ),
            (Op::Writev { iov, iovcnt }, _) => (
                cmd::NVME_URING_CMD_IO_VEC,
                io(cmd::IO_WRITE).slba(lba).data(iov.cast(), iovcnt),
            ),
            (Op::WriteZeroes { .. }, _) => {
                let mut c = io(cmd::IO_WRITE_ZEROES).slba(lba);
                if req.flags & REQ_NO_UNMAP == 0 {
                    c.cdw12 |= cmd::CDW12_DEAC;
                }
                (cmd::NVME_URING_CMD_IO, c)
            }
            (Op::Discard { .. }, Payload::Range(range)) => {
                let mut c = io(cmd::IO_DATASET_MANAGEMENT).data(range.as_ptr(), 16);
                c.cdw11 = cmd::DSM_DEALLOCATE;
                (cmd::NVME_URING_CMD_IO, c)
            }
            (Op::Flush, _) => (cmd::NVME_URING_CMD_IO, io(cmd::IO_FLUSH)),
            (Op::ReportZones { .. }, Payload::Report { buf, .. }) => {
                let len = buf.len() as u32;
                let mut c = io(cmd::IO_ZONE_MGMT_RECV).slba(lba).data(buf.as_ptr(), len);
                c.cdw12 = len / 4 - 1;
                c.cdw13 = cmd::ZONE_RECV_PARTIAL;
                (cmd::NVME_URING_CMD_IO, c)
            }
            (Op::ZoneMgmt { op, all }, _) => {
                let mut c = io(cmd::IO_ZONE_MGMT_SEND).slba(if all { 0 } else { lba });
                c.cdw13 = match op {
                    ZoneOp::Close => 1,
                    ZoneOp::Finish => 2,
                    ZoneOp::Open => 3,
                    ZoneOp::Reset => 4,
                };
                if all {
                    c.cdw13 |= cmd::ZONE_SEND_SELECT_ALL;
                }
                (cmd::NVME_URING_CMD_IO, c)
            }
            (Op::Discard { .. } | Op::ReportZones { .. }, _) => unreachable!("payload set"),
        };
        let mut c = c;
        if matches!(
            req.op,
            Op::Read { .. }
                | Op::Write { .. }
                | Op::Readv { .. }
                | Op::Writev { .. }
                | Op::WriteZeroes { .. }
        ) {
            c.cdw12 |= (nlb & 0xFFFF) | fua;
        }
        opcode::UringCmd80::new(FIXED_FILE, op)
            .cmd(c.to_uring_cmd())
            .build()
            .user_data(idx as u64)
    }

    /// The library-owned data of a new request.
    fn payload(&self, req: &Request) -> Payload {
        match req.op {
            Op::Discard { len } => Payload::Range(cmd::dsm_range(
                req.start >> self.ns.lba_shift,
                (len >> self.ns.lba_shift) as u32,
            )),
            Op::ReportZones { nr_zones, .. } => {
                // Ask for no more descriptors than one transfer can carry;
                // the report is partial anyway, `ret` says how many came.
                let fit = (self.ns.limits.max_transfer as usize / ENTRY_SIZE).saturating_sub(1);
                let asked = nr_zones.min(fit as u32);
                Payload::Report {
                    buf: vec![0u8; ENTRY_SIZE * (1 + asked as usize)].into_boxed_slice(),
                    asked,
                }
            }
            _ => Payload::None,
        }
    }

    /// The completion of the request in slot `idx` whose CQE says `res`.
    fn complete(&mut self, idx: u32, res: i32) -> Completion {
        let slot = self.slots[idx as usize].take().expect("busy slot");
        self.free.push(idx);
        self.busy -= 1;
        let outcome = match status::check(res) {
            Some(failure) => Err(failure),
            None => match (slot.req.op, &slot.payload) {
                (Op::ReportZones { zones, .. }, Payload::Report { buf, asked }) => {
                    let geo = zones::Geometry {
                        lba_shift: self.ns.lba_shift,
                        zone_size: self.ns.limits.zoned.as_ref().map_or(0, |z| z.zone_size),
                    };
                    // SAFETY: `zones` is the application's array of
                    // nr_zones ≥ asked entries.
                    unsafe { zones::convert(buf, zones, *asked, geo) }
                }
                _ => Ok(0),
            },
        };
        match outcome {
            Ok(ret) => Completion::new(slot.req.user_data, ret, None),
            Err((ret, msg)) => Completion::new(slot.req.user_data, ret, Some(msg)),
        }
    }
}

impl QueueDriver for NvmeQueue {
    fn enqueue(&mut self, req: &Request) -> Enqueue {
        if let Some((ret, msg)) = self.refuse(req) {
            return Enqueue::Failed(-ret, Some(msg));
        }
        let Some(idx) = self.free.pop() else {
            return Enqueue::Full;
        };
        self.slots[idx as usize] = Some(Slot {
            req: *req,
            payload: self.payload(req),
        });
        let entry = self.sqe(idx);
        // SAFETY: the SQE points to the application's buffers (valid until
        // completion by contract) and to this slot's payload, which stays
        // in place until the request's CQE is reaped (or is leaked on drop).
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.slots[idx as usize] = None;
            self.free.push(idx);
            return Enqueue::Full;
        }
        self.busy += 1;
        Enqueue::Queued
    }

    fn reap(&mut self, out: &mut [Completion]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let next = self.ring.completion().next();
            let Some(cqe) = next else { break };
            out[n] = self.complete(cqe.user_data() as u32, cqe.result());
            n += 1;
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.busy
    }

    fn needs_submit(&self) -> bool {
        // SAFETY: no other SubmissionQueue of this ring is alive here.
        unsafe { !self.ring.submission_shared().is_empty() }
    }

    fn submit_and_wait(
        &mut self,
        wait_for: usize,
        timeout: Option<Duration>,
        sig: Option<&libc::sigset_t>,
    ) -> Result<()> {
        let to_submit = self.ring.submission().len() as u32;
        uring_wait::submit_and_wait(
            self.ring.as_raw_fd(),
            to_submit,
            wait_for,
            false,
            timeout,
            sig,
        )
        .map_err(Error::from)
    }

    fn completion_fd(&self) -> RawFd {
        self.eventfd.raw()
    }

    fn expose_completion_fd(&mut self) -> Result<()> {
        self.eventfd.expose(&self.ring)
    }

    fn set_completion_fd_enabled(&mut self, enabled: bool) {
        self.eventfd.set_enabled(&self.ring, enabled);
    }
}

impl Drop for NvmeQueue {
    fn drop(&mut self) {
        // Requests still in flight are abandoned (docs/contract/abi.md §6.5), but the
        // kernel may yet read or write their slots' payloads: keep that
        // memory alive rather than free it under the device.
        if self.busy > 0 {
            std::mem::forget(std::mem::take(&mut self.slots));
        }
    }
}
