from nullspace_utils import plotting
from nullspace_utils.studies import claims
from nullspace_utils.studies.evidence import Claim

dimensions, invariance = claims.section_3(images=2)  # §3: computed now, from the zoo's weights
assert dimensions.verdict == "partly" and "480 / 192 / 0 for the zoo's ViT-S/B/L" in dimensions.sentence
assert invariance.verdict == "reproduced" and "below 1e-4" in invariance.sentence

rows = claims.follow_up("teaching")  # the follow-up's four rows, from the fine-tuning files
assert [row.chapter for row in rows] == ["finetune"] * 4
table = claims.table(rows)  # a pipe table under COLUMNS, one line per claim
assert table.startswith("| " + " | ".join(claims.COLUMNS)) and len(table.splitlines()) == 2 + len(rows)
box = claims.summary(rows)  # the chapter's "what we found" box: display(box) in a notebook
assert box.markdown.startswith(":::{admonition} What we found") and box.count("\n") == len(rows) - 1
assert claims.clauses("match 97 % (seeds 0; 1); shuffled 50 %") == ["Match 97 % (seeds 0; 1)", "Shuffled 50 %"]
facts = claims.findings(["A 3 × 5 matrix has a 2-dimensional nullspace.", "Rank + nullity = 5."])  # no claims
assert facts.markdown.startswith(":::{admonition} What we found") and facts.count("\n") == 1
details = claims.folded("Per point", plotting.table([["a", "1"]], ["name", "value"]))  # rows, collapsed
assert ":class: dropdown" in details.markdown and "| a | 1 |" in details.markdown and details.startswith("name")
assert "50 % for 1 against 3" in claims.legend()  # the verdict words and the chance of a false separation

# a page's generated parts sit between markers; the prose around them is kept as written
page = "Some prose.\n\n<!-- claims: legend -->\nold text\n<!-- /claims -->\n\nMore prose.\n"
rendered = claims.render(page)
assert rendered.startswith("Some prose.") and "old text" not in rendered and "**partly**" in rendered
assert claims.MARKER.search(rendered).group("name") == "legend"
assert callable(claims.paper) and isinstance(invariance, Claim)
