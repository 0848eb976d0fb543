#!/usr/bin/env python3
"""Reads the output of `bible "gen1:1-rev22:21"` on stdin and writes plain text: chapter headings and verse
numbers dropped, each verse joined onto one line."""
import re
import sys

verse = []
for line in sys.stdin:
    line = line.rstrip("\n")
    m = re.match(r"^\s+\d+\s(.*)$", line)
    if m:  # a new verse starts
        if verse:
            print(" ".join(verse))
        verse = [m.group(1).strip()]
    elif line.strip() and verse and not re.match(r"^\S.*\s\d+$", line):
        verse.append(line.strip())  # continuation of the verse
    elif line.strip():  # a chapter heading such as "Genesis 1"
        if verse:
            print(" ".join(verse))
        verse = []
if verse:
    print(" ".join(verse))
