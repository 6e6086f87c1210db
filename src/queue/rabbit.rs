//! RabbitMQ: durable queues under `broker.prefix`, persistent messages, publisher confirms,
//! manual acks, bounded prefetch, and reconnection with backoff on both sides.

use super::BrokerConfig;
use super::{Handled, Handler, Message, Queue, QueueError, REQUEUE_PAUSE, Topic, run_handler};
use crate::secret::{Secret, redact_url};
use crate::telemetry::metrics;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const PERSISTENT: u8 = 2;

#[derive(Clone)]
pub struct Rabbit {
    url: Secret,
    config: Arc<BrokerConfig>,
    publisher: Arc<Mutex<Option<(Connection, Channel)>>>,
}

impl Rabbit {
    pub fn new(url: Secret, config: BrokerConfig) -> Rabbit {
        Rabbit {
            url,
            config: Arc::new(config),
            publisher: Arc::new(Mutex::new(None)),
        }
    }

    pub fn queue_name(&self, topic: Topic) -> String {
        format!("{}.{}", self.config.prefix, topic.as_str())
    }

    async fn open(&self, role: &str) -> Result<(Connection, Channel), QueueError> {
        let properties =
            ConnectionProperties::default().with_connection_name(format!("leadlink-{role}").into());
        let connection = Connection::connect(self.url.expose(), properties)
            .await
            .map_err(unavailable)?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        for topic in [Topic::Connect, Topic::Writeback] {
            channel
                .queue_declare(
                    self.queue_name(topic).into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok((connection, channel))
    }

    /// The publisher's confirming channel, opened again if the last one broke.
    async fn publisher_channel<'a>(
        &self,
        guard: &'a mut Option<(Connection, Channel)>,
    ) -> Result<&'a Channel, QueueError> {
        let usable = guard
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
        if !usable {
            *guard = None;
            let (connection, channel) = self.open("publisher").await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            *guard = Some((connection, channel));
        }
        Ok(&guard.as_ref().expect("publisher channel was just opened").1)
    }

    async fn publish_once(&self, message: Message) -> Result<(), QueueError> {
        let timeout = self.config.publish_timeout;
        // The wait for the shared channel counts too: behind a wedged publish, every other
        // one would otherwise queue up for its whole timeout in turn.
        let mut held = false;
        let result = tokio::time::timeout(timeout, async {
            let mut guard = self.publisher.lock().await;
            held = true;
            let result = self.publish_on(&mut guard, message).await;
            if result.is_err() {
                // Start from a fresh connection next time: this one may be wedged.
                *guard = None;
            }
            result
        })
        .await;
        match result {
            Ok(result) => result,
            Err(_) => {
                // Our own publish was cut off: its channel may be wedged. A publish that
                // took the lock meanwhile times out and resets it by itself.
                if held && let Ok(mut guard) = self.publisher.try_lock() {
                    *guard = None;
                }
                Err(QueueError::Timeout(timeout))
            }
        }
    }

    async fn publish_on(
        &self,
        guard: &mut Option<(Connection, Channel)>,
        message: Message,
    ) -> Result<(), QueueError> {
        let channel = self.publisher_channel(guard).await?;
        let confirm = channel
            .basic_publish(
                "".into(),
                self.queue_name(message.topic()).into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                message.reference().as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(PERSISTENT)
                    .with_content_type("text/plain".into()),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        if confirm.is_nack() {
            return Err(QueueError::NotConfirmed("nack".into()));
        }
        if let Some(returned) = confirm.take_message() {
            return Err(QueueError::NotConfirmed(format!(
                "returned unroutable: {}",
                returned.reply_text
            )));
        }
        Ok(())
    }

    async fn consume_session(
        &self,
        topic: Topic,
        concurrency: usize,
        handler: &Handler,
        shutdown: &CancellationToken,
        connected: &mut bool,
    ) -> Result<(), QueueError> {
        let (connection, channel) = self.open(topic.as_str()).await?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let tag = format!("leadlink-{}-{}", topic.as_str(), uuid::Uuid::new_v4());
        let mut consumer = channel
            .basic_consume(
                self.queue_name(topic).into(),
                tag.clone().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        *connected = true;
        tracing::info!(queue = %self.queue_name(topic), "consuming");
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut in_flight = JoinSet::new();
        let outcome = loop {
            while in_flight.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                next = consumer.next() => next,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => break Err(unavailable(e)),
                None => {
                    break Err(QueueError::Unavailable(
                        "consumer was cancelled by the broker".into(),
                    ));
                }
            };
            let handler = handler.clone();
            in_flight.spawn(async move {
                settle_delivery(topic, delivery, &handler).await;
                drop(permit);
            });
        };
        if shutdown.is_cancelled() {
            // Stop new deliveries, then let the handlers in flight finish and ack.
            let _ = channel
                .basic_cancel(tag.into(), BasicCancelOptions::default())
                .await;
            while in_flight.join_next().await.is_some() {}
            let _ = connection.close(200, "bye".into()).await;
        } else {
            // The connection is gone and the broker redelivers those messages elsewhere:
            // reconnect now, and let the old handlers finish on their own.
            tokio::spawn(async move { while in_flight.join_next().await.is_some() {} });
        }
        outcome
    }
}

/// Runs the handler for one delivery and acknowledges it, or requeues it after a pause.
async fn settle_delivery(topic: Topic, delivery: lapin::message::Delivery, handler: &Handler) {
    let reference = String::from_utf8_lossy(&delivery.data);
    let handled = match Message::parse(topic, &reference) {
        Some(message) => run_handler(handler, message).await,
        None => {
            tracing::warn!(%reference, ?topic, "message names nothing of ours; dropped");
            Handled::Ack
        }
    };
    let result = match handled {
        Handled::Ack => delivery.ack(BasicAckOptions::default()).await,
        Handled::Requeue => {
            tokio::time::sleep(REQUEUE_PAUSE).await;
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    };
    if let Err(e) = result {
        // The channel is gone; the broker redelivers the message elsewhere.
        tracing::warn!(error = %e, "could not settle a delivery");
    }
}

fn unavailable(error: lapin::Error) -> QueueError {
    QueueError::Unavailable(error.to_string())
}

impl Queue for Rabbit {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        let started = tokio::time::Instant::now();
        self.publish_once(message).await?;
        metrics::published(started.elapsed());
        Ok(())
    }

    async fn consume(
        &self,
        topic: Topic,
        concurrency: usize,
        handler: Handler,
        shutdown: CancellationToken,
    ) {
        let mut delay = self.config.reconnect_min;
        while !shutdown.is_cancelled() {
            let mut connected = false;
            match self
                .consume_session(topic, concurrency, &handler, &shutdown, &mut connected)
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    if connected {
                        delay = self.config.reconnect_min;
                    }
                    tracing::warn!(
                        broker = %redact_url(self.url.expose()),
                        queue = %self.queue_name(topic),
                        error = %e,
                        retry_in = ?delay,
                        "consumer lost the broker; reconnecting"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(self.config.reconnect_max);
                }
            }
        }
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let timeout = self.config.publish_timeout;
        tokio::time::timeout(timeout, async {
            // A real round trip on the publisher's connection, without opening a new one.
            let mut guard = self.publisher.lock().await;
            let channel = self.publisher_channel(&mut guard).await?;
            let answer = channel
                .queue_declare(
                    self.queue_name(Topic::Connect).into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            if let Err(error) = answer {
                *guard = None;
                return Err(unavailable(error));
            }
            Ok(())
        })
        .await
        .map_err(|_| QueueError::Timeout(timeout))?
    }
}
