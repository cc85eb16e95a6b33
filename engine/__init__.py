"""The pure model of petriflow: workflows, entity state machines, routing,
executors and messages. Nothing here imports Thespian or does I/O, so the
whole model is testable without an actor system."""
