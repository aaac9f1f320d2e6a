//! Tests of the embedded pgq core SQL (queues, ticks, batches, retry, rotation) on real clusters.
