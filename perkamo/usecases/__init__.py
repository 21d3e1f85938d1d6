"""Use cases: what the operator surfaces (HTTP handlers, the console, the CLI) ask of the
product, one module per capability, called the same way from each. They take the runtime
and plain arguments, return documents or answers, and raise PerkamoError for refusals."""
