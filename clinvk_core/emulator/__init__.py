"""The local emulator: ``template.yaml``'s routes on localhost, each function invoked as Lambda would."""
