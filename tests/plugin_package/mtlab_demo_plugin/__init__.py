"""One mtlab plug-in of each kind (see the package README); each module registers itself when imported."""
