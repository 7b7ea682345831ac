"""Relaying stored events to subscribers, one module per job.

- fanout: pending events become deliveries, one transaction per chunk;
- drain: one drainer per subscription claims due deliveries and sends them in order;
- outcomes: what an answer means (retry, fail, disable) and saving it;
- replay: deliveries sent again on request;
- sweep: what a lost broker message or a dead worker left is handed out again;
- sequencing: what ordering, coalescing and expiry change about what a drain may take;
- controls: pause, resume, rotate, test (what an operator does).

The database is the source of truth and the broker only carries work: every task message
points at rows, and the sweep finds the same rows if the message is lost. Read-only queries
live in subscriptions/selectors.py, the HTTP transport in subscriptions/sender.py.
"""
