//! Barrier alignment: a stage with several inputs takes its snapshot for checkpoint `n` only
//! once barrier `n` has arrived on every input. An input whose barrier has arrived is blocked
//! (nothing more is read from it) until the others' barriers arrive, so the snapshot holds
//! exactly the records before the barrier on every input. A closed input counts as aligned:
//! nothing more comes from it.

use std::future::poll_fn;
use std::task::Poll;

use tokio::sync::mpsc::Receiver;

use super::envelope::{Envelope, Message};

/// What an aligned stage sees next.
#[derive(Debug)]
pub enum Aligned {
    Batch(Envelope),
    /// Barrier `id` has arrived on every input that is still open.
    Barrier(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputState {
    Open,
    /// Its barrier for the checkpoint being aligned has arrived.
    Blocked,
    Closed,
}

/// The inputs of one stage, read in turn and aligned on barriers.
pub struct AlignedInputs {
    inputs: Vec<Receiver<Message>>,
    states: Vec<InputState>,
    /// The checkpoint being aligned.
    aligning: Option<u64>,
    /// Where the next poll starts, so no input starves the others.
    next: usize,
    runtime: tokio::runtime::Runtime,
}

impl AlignedInputs {
    /// Aligns `inputs` (one channel per upstream stream).
    pub fn new(inputs: Vec<Receiver<Message>>) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        Self {
            states: vec![InputState::Open; inputs.len()],
            inputs,
            aligning: None,
            next: 0,
            runtime,
        }
    }

    /// The next batch from an open input, or a barrier once it is aligned; `None` when every
    /// input has closed. Blocks while nothing is ready.
    pub fn next(&mut self) -> Option<Aligned> {
        loop {
            if let Some(id) = self.aligning
                && !self.states.contains(&InputState::Open)
            {
                self.aligning = None;
                self.unblock();
                return Some(Aligned::Barrier(id));
            }
            let (index, message) = self.receive()?;
            match message {
                Some(Message::Batch(envelope)) => return Some(Aligned::Batch(envelope)),
                Some(Message::Barrier(id)) => {
                    match self.aligning {
                        Some(current) if id < current => continue, // a stale barrier
                        Some(current) if id > current => {
                            // A newer checkpoint overtakes an unfinished one: align on it.
                            tracing::warn!("checkpoint {current} abandoned for {id}");
                            self.unblock();
                        }
                        _ => {}
                    }
                    self.aligning = Some(id);
                    self.states[index] = InputState::Blocked;
                }
                None => self.states[index] = InputState::Closed,
            }
        }
    }

    /// Opens the inputs blocked on the barrier being aligned.
    fn unblock(&mut self) {
        for state in &mut self.states {
            if *state == InputState::Blocked {
                *state = InputState::Open;
            }
        }
    }

    /// Waits for a message on any open input: `(input, message)`, `None` as the message when
    /// that input closed; `None` when no input is open.
    fn receive(&mut self) -> Option<(usize, Option<Message>)> {
        if !self.states.contains(&InputState::Open) {
            return None;
        }
        let count = self.inputs.len();
        let start = self.next;
        let (inputs, states) = (&mut self.inputs, &self.states);
        let received = self.runtime.block_on(poll_fn(|cx| {
            for step in 0..count {
                let index = (start + step) % count;
                if states[index] != InputState::Open {
                    continue;
                }
                if let Poll::Ready(message) = inputs[index].poll_recv(cx) {
                    return Poll::Ready((index, message));
                }
            }
            Poll::Pending
        }));
        self.next = (received.0 + 1) % count;
        Some(received)
    }

    /// Closes every input after the stage failed, marking what was queued failed.
    pub fn fail_queued(&mut self) {
        for input in &mut self.inputs {
            super::envelope::fail_queued(input);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use tokio::sync::mpsc::{Sender, channel};

    use super::super::envelope::Offsets;
    use super::*;

    fn batch(input: &str, id: i64) -> Message {
        let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![id])) as _)])
            .unwrap();
        Message::Batch(Envelope {
            stream: Arc::from(input),
            origin: Arc::from(input),
            input: Arc::from(input),
            partition: 0,
            offsets: Offsets::Rows(vec![id].into()),
            watermark_ms: None,
            batch,
            ack: None,
        })
    }

    fn seen(aligned: Option<Aligned>) -> String {
        match aligned {
            Some(Aligned::Batch(e)) => format!("{}{}", e.input, e.offsets.bounds().0),
            Some(Aligned::Barrier(id)) => format!("|{id}"),
            None => "end".into(),
        }
    }

    fn two_inputs() -> (Sender<Message>, Sender<Message>, AlignedInputs) {
        let (a_tx, a_rx) = channel(16);
        let (b_tx, b_rx) = channel(16);
        (a_tx, b_tx, AlignedInputs::new(vec![a_rx, b_rx]))
    }

    #[test]
    fn a_barrier_blocks_its_input_until_the_other_input_brings_its_own() {
        let (a, b, mut inputs) = two_inputs();
        for message in [
            batch("a", 1),
            Message::Barrier(7),
            batch("a", 2),
            batch("a", 3),
        ] {
            a.blocking_send(message).unwrap();
        }
        b.blocking_send(batch("b", 1)).unwrap();
        b.blocking_send(batch("b", 2)).unwrap();
        b.blocking_send(Message::Barrier(7)).unwrap();
        b.blocking_send(batch("b", 3)).unwrap();
        // Round robin: a1, b1; then a's barrier blocks a, so b2 comes before any of a's
        // later records, and the barrier is passed on once b's has arrived.
        let order: Vec<String> = (0..4).map(|_| seen(inputs.next())).collect();
        assert_eq!(order, ["a1", "b1", "b2", "|7"]);
        drop((a, b));
        let mut after = Vec::new();
        loop {
            let next = seen(inputs.next());
            if next == "end" {
                break;
            }
            after.push(next);
        }
        after.sort();
        assert_eq!(after, ["a2", "a3", "b3"]);
    }

    #[test]
    fn a_closed_input_counts_as_aligned() {
        let (a, b, mut inputs) = two_inputs();
        drop(b);
        a.blocking_send(batch("a", 1)).unwrap();
        a.blocking_send(Message::Barrier(3)).unwrap();
        assert_eq!(seen(inputs.next()), "a1");
        assert_eq!(seen(inputs.next()), "|3");
        drop(a);
        assert_eq!(seen(inputs.next()), "end");
    }

    #[test]
    fn a_barrier_pending_when_the_last_input_closes_is_still_delivered() {
        let (a, b, mut inputs) = two_inputs();
        a.blocking_send(Message::Barrier(2)).unwrap();
        drop(a);
        b.blocking_send(batch("b", 1)).unwrap();
        assert_eq!(seen(inputs.next()), "b1");
        drop(b);
        assert_eq!(seen(inputs.next()), "|2");
        assert_eq!(seen(inputs.next()), "end");
    }
}
