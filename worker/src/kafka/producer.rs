//! The worker's Kafka producer: one future per record that resolves when the broker acknowledged it
//! (or refused it), served by a delivery thread that sleeps while nothing happens.
//!
//! It offers the calls of rdkafka's `FutureProducer` that the worker uses. We do not use that type
//! because its delivery thread (rdkafka 0.39) waits in 100 ms slices whose deadline is converted to
//! whole milliseconds: every slice waits 99 ms and then spins through the last millisecond. That is
//! about 1% of a core per producer, idle or not, and a worker holds one producer per internal topic
//! plus the task producers. Here a slice is one second and one microsecond, so the whole-millisecond
//! wait ends past the deadline and the thread does not spin; after an event it spins at most for the
//! sub-millisecond rest of one slice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::channel::oneshot;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, OwnedMessage, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureRecord, Producer as _, ProducerContext};

/// Where the record landed (partition, offset), or why it was not delivered.
pub type Delivered = Result<(i32, i64), KafkaError>;

/// A record librdkafka gave up on (after its own retries), with its bytes, so that the caller can
/// dead-letter it.
#[derive(Debug)]
pub struct Undelivered {
    /// Why.
    pub error: KafkaError,
    /// The record as it was sent.
    pub message: OwnedMessage,
}

/// Resolves once the record is acknowledged or refused; `Err(Canceled)` if the producer went away
/// first.
pub type DeliveryFuture = oneshot::Receiver<Result<(i32, i64), Undelivered>>;

/// How long the delivery thread waits for events in one call; see the module comment for the
/// extra microsecond.
const POLL_SLICE: Duration = Duration::from_micros(1_000_001);

/// Waits for a queued record's acknowledgement.
pub async fn acknowledged(delivery: DeliveryFuture) -> Delivered {
    match delivery.await {
        Ok(delivered) => delivered.map_err(|u| u.error),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Routes each delivery report to the future of its record, and notes when librdkafka reports
/// every broker down.
#[derive(Default)]
struct Deliveries {
    brokers_down: AtomicBool,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!("librdkafka: {error}: {reason}");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(i32, i64), Undelivered>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let delivered = match result {
            Ok(m) => {
                self.brokers_down.store(false, Ordering::Relaxed);
                Ok((m.partition(), m.offset()))
            }
            Err((e, m)) => Err(Undelivered {
                error: e.clone(),
                message: m.detach(),
            }),
        };
        // The caller may have stopped waiting; the record was delivered either way.
        let _ = tx.send(delivered);
    }
}

/// A cloneable handle to one producer and its delivery thread.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    base: Arc<BaseProducer<Deliveries>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The thread sees this within one slice, then drops its handle, which flushes what is
        // still queued (rdkafka waits up to 500 ms) and closes the client.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Producer {
    /// Creates the producer from `config` and starts its delivery thread.
    pub fn create(config: &ClientConfig) -> KafkaResult<Self> {
        let base: Arc<BaseProducer<Deliveries>> =
            Arc::new(config.create_with_context(Deliveries::default())?);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let base = Arc::clone(&base);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kafka-deliveries".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        base.poll(POLL_SLICE);
                    }
                })
                .map_err(|e| KafkaError::ClientCreation(format!("starting a thread: {e}")))?;
        }
        Ok(Self {
            inner: Arc::new(Inner { base, stop }),
        })
    }

    /// Queues a record without waiting; gives it back if librdkafka's queue is full or the record
    /// is refused at once.
    #[allow(clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(tx),
        };
        match self.inner.base.send(base) {
            Ok(()) => Ok(rx),
            Err((e, back)) => Err((
                e,
                FutureRecord {
                    topic: back.topic,
                    partition: back.partition,
                    payload: back.payload,
                    key: back.key,
                    timestamp: back.timestamp,
                    headers: back.headers,
                },
            )),
        }
    }

    /// Queues a record and gives the future of its acknowledgement; while librdkafka's queue is
    /// full, retries for up to `queue_timeout`. Records queued one after another keep that order
    /// within a partition (the producer is idempotent).
    pub async fn queue<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Result<DeliveryFuture, KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let deadline = tokio::time::Instant::now() + queue_timeout;
        loop {
            match self.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if tokio::time::Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Sends a record and waits for its acknowledgement; while librdkafka's queue is full, retries
    /// for up to `queue_timeout`.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Delivered
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        acknowledged(self.queue(record, queue_timeout).await?).await
    }

    /// Whether librdkafka reported every broker down since the last acknowledged record or
    /// successful [`probe`](Self::probe).
    pub fn brokers_down(&self) -> bool {
        self.inner
            .base
            .context()
            .brokers_down
            .load(Ordering::Relaxed)
    }

    /// Asks the cluster for its metadata (blocking, up to `timeout`): whether a broker answered.
    pub fn probe(&self, timeout: Duration) -> bool {
        let answered = self
            .inner
            .base
            .client()
            .fetch_metadata(None, timeout)
            .is_ok();
        if answered {
            self.inner
                .base
                .context()
                .brokers_down
                .store(false, Ordering::Relaxed);
        }
        answered
    }

    /// Fetches `topic`'s partition leaders now rather than on the first send (blocking, up to
    /// `timeout`; failures are left for the first send to report).
    pub fn warm_up(&self, topic: &str, timeout: Duration) {
        let _ = self
            .inner
            .base
            .client()
            .fetch_metadata(Some(topic), timeout);
    }
}
