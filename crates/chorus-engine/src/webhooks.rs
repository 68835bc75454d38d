//! Outgoing HTTP to customer URLs: XML fetches and signed, ordered, retried notifications.
