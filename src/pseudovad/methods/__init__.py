"""The detection methods, one module each (`ltgpa`, `mae_nct`), registered by name.

A method's module holds everything the rest of the package asks about it (a
`method_spec.MethodSpec`): the registry in `pseudovad.method_spec` loads every module of this folder
on the first lookup, so adding a method is one new file here (plus its networks and update rule where they live, `models/` and
`training/`). Nothing outside this folder branches on a method's name.
"""
