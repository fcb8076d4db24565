"""Mail values, the ground floor: replies, xtext; every other package stands on these."""
