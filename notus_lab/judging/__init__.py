"""Judges, generation, judged generations, and the answer files external judges read."""
