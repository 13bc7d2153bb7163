"""Worked example on a panel that is not the demo: castle-doctrine laws and homicide.

Data: Cheng & Hoekstra (2013), "Does Strengthening Self-Defense Law Deter Crime or Escalate
Violence? Evidence from Expansions to Castle Doctrine", Journal of Human Resources 48(3), as
distributed in the `causaldata` package (50 US states, 2000-2010). Run:

    python examples/castle_doctrine.py [OUT]     # default OUT: castle_out/
"""

import sys

import causaldata

import bayes_nqp as bn

out = sys.argv[1] if len(sys.argv) > 1 else "castle_out"
df = causaldata.castle.load_pandas().data[["sid", "year", "l_homicide", "post", "unemployrt"]]
df = df.assign(post=df["post"].astype(int))

panel = bn.load_panel(df, {"unit": "sid", "time": "year", "outcome": "l_homicide",
                           "treated": "post", "controls": ["unemployrt"]})
rep = bn.replicate("did", panel)
print("TWFE:", {k: round(rep["did_controls"][k], 4) for k in ("estimate", "se")})

fit = bn.fit("did", panel, priors="weak", seed=1, replication=rep)
print(repr(fit))
print(fit.summary()[["param", "mean", "sd", "hdi95_lo", "hdi95_hi", "p_positive", "rhat", "ess_bulk"]]
      .round(4).to_string(index=False))
print(fit.compare().round(4).to_string(index=False))
print(fit.table().markdown())
fit.save(f"{out}/did")
fit.plot().savefig(f"{out}/did_forest.png", dpi=120)
