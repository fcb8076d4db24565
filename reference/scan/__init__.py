"""Content scanners the policy calls: spam (analysis, links, rules, the scorer), Bayes, Office
macros, and a clamd client (virus). Each is its own module, imported by name: the package
itself exports nothing, so importing one scanner never loads another's dependencies."""

__all__: list[str] = []
